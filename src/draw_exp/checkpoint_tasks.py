"""The bodies of evaluate.py and sample.py: load a checkpoint, its data, and do the one job."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import DataLoader, Subset

from draw_exp.checkpoints import CheckpointError, read_checkpoint, write_atomically
from draw_exp.errors import ConfigError, check_choice, check_int_range, instantiate_checked
from draw_exp.evaluation import evaluate, evaluate_classifier, format_classifier_row, format_table
from draw_exp.lit_classifier import CHECKPOINT_KIND, ClassifierModule
from draw_exp.lit_module import DrawModule
from draw_exp.pictures import fixed_noise, glimpse_trajectories, render_all

DATAMODULE_HPARAMS = pl.LightningDataModule.CHECKPOINT_HYPER_PARAMS_KEY  # where train.py keeps the run's data settings


def resolve_device(name: str) -> torch.device:
    check_choice("device", name, ("auto", "cpu", "cuda"))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_checkpoint(path: str, device: torch.device) -> tuple[DrawModule | ClassifierModule, dict]:
    """The module of a checkpoint, and the checkpoint itself (its run's data settings are read from it)."""
    checkpoint = read_checkpoint(path)  # weights_only; a missing or damaged file is named
    if "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"ckpt_path={str(path)!r}: not a checkpoint of train.py (it holds "
            f"{', '.join(map(str, checkpoint)) or 'nothing'}; expected hyper_parameters and state_dict)"
        )
    module_class = ClassifierModule if checkpoint.get("module") == CHECKPOINT_KIND else DrawModule
    module = module_class(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.to(device).eval(), checkpoint


def user_set(key: str) -> bool:
    """Whether ``key`` was given on this command line (never, outside a Hydra command)."""
    return HydraConfig.initialized() and any(
        o.lstrip("+~").split("=", 1)[0] == key for o in HydraConfig.get().overrides.task
    )


def data_config(cfg: DictConfig, checkpoint: dict) -> DictConfig:
    """The data settings of the checkpoint's own run, or those of ``data=...`` on the command line (with a note
    when they differ). The data folder is the run's unless ``paths.data_dir`` or $DRAW_DATA_DIR names one."""
    saved = checkpoint.get(DATAMODULE_HPARAMS)
    if cfg.get("data") is not None:
        data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
        if saved and saved.get("_target_") != data._target_:
            print(
                f"note: data={data._target_.rsplit('.', 1)[-1]} from the command line; the checkpoint was "
                f"trained on {saved['_target_'].rsplit('.', 1)[-1]}"
            )
        return data
    if not saved:
        raise ConfigError(
            "the checkpoint records no data set (it was written before checkpoints kept their run's "
            "data settings): choose one with data=..., e.g. data=binarized_mnist"
        )
    data = OmegaConf.create(saved)
    if user_set("paths.data_dir") or "DRAW_DATA_DIR" in os.environ:
        data.data_dir = cfg.paths.data_dir
    print(
        f"data: {data._target_.rsplit('.', 1)[-1]} in {data.data_dir}, as the checkpoint's run was trained "
        "(data=... on the command line chooses another)"
    )
    return data


def load_split(cfg: DictConfig, module: DrawModule, checkpoint: dict, split: str, limit_images: int | None = None):
    """The ``split`` of the checkpoint's data set as a loader; ``limit_images``: that many images spread evenly over
    the split (files may be sorted by class: the first N would not be a fair sample)."""
    data = data_config(cfg, checkpoint)
    data.download = False  # evaluation reads the files the run trained on; it never fetches
    datamodule = instantiate_checked(data)
    if tuple(datamodule.image_shape) != tuple(module.hparams.image_shape):
        raise ConfigError(
            f"data={data._target_} serves images of shape {tuple(datamodule.image_shape)}, but the "
            f"checkpoint was trained on {tuple(module.hparams.image_shape)}: choose its data set with data=..."
        )
    datamodule.prepare_data()
    datamodule.setup("test")
    dataset = datamodule.datasets[split]
    if limit_images is not None and limit_images < len(dataset):
        dataset = Subset(dataset, torch.linspace(0, len(dataset) - 1, limit_images).round().long().tolist())
    return data, DataLoader(dataset, batch_size=datamodule.batch_size, num_workers=cfg.num_workers)


def add_results(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` to the JSON list at ``path`` (earlier evaluations are kept), written atomically."""
    earlier = json.loads(path.read_text()) if path.is_file() else []
    write_atomically(path, lambda f: f.write(json.dumps(earlier + rows, indent=2).encode()))


def check_common_keys(cfg: DictConfig) -> None:
    """The keys evaluate.py and sample.py share, before the checkpoint is read."""
    check_int_range("num_workers", cfg.num_workers, 0)
    check_int_range("seed", cfg.seed, 0, 2**32 - 1)


def run_evaluate(cfg: DictConfig) -> list[dict]:
    check_common_keys(cfg)
    check_choice("split", cfg.split, ("test", "val"))
    ks = list(cfg.iw_samples) if isinstance(cfg.iw_samples, (list, ListConfig)) else [cfg.iw_samples]
    for k in ks:
        check_int_range("iw_samples", k, 1)
    check_int_range("max_batch", cfg.max_batch, 1)
    if cfg.limit_images is not None:
        check_int_range("limit_images", cfg.limit_images, 1)
    device = resolve_device(cfg.device)
    pl.seed_everything(cfg.seed, verbose=False)
    module, checkpoint = load_checkpoint(cfg.ckpt_path, device)
    classifier = isinstance(module, ClassifierModule)
    if classifier and ks:
        raise ConfigError(
            f"iw_samples={ks} is not allowed for a classifier's checkpoint: it has no likelihood to "
            "bound; evaluate.py reports its error"
        )
    data, loader = load_split(cfg, module, checkpoint, cfg.split, cfg.limit_images)
    rows = (
        [evaluate_classifier(module, loader, device)]
        if classifier
        else evaluate(module, loader, ks, cfg.max_batch, device)
    )
    when = datetime.now().isoformat(timespec="seconds")
    for row in rows:
        row.update(
            {
                "data": data._target_.rsplit(".", 1)[-1],
                "split": cfg.split,
                "checkpoint": str(cfg.ckpt_path),
                "global_step": checkpoint.get("global_step"),
                "seed": cfg.seed,  # with split, images and K: enough to repeat the row exactly
                "device": str(device),
                "evaluated_at": when,
            }
        )
    print(format_classifier_row(rows[0]) if classifier else format_table(rows))
    output = Path(cfg.output) if cfg.output else Path(cfg.ckpt_path).with_suffix(".eval.json")
    add_results(output, rows)
    print(f"added to {output}")
    return rows


def run_sample(cfg: DictConfig) -> dict:
    check_common_keys(cfg)
    check_int_range("n", cfg.n, 1)
    check_int_range("reconstruct", cfg.reconstruct, 0)
    for key in ("animated", "strip_every", "scale"):
        check_int_range(key, cfg[key], 1)
    device = resolve_device(cfg.device)
    pl.seed_everything(cfg.seed, verbose=False)
    module, checkpoint = load_checkpoint(cfg.ckpt_path, device)
    if isinstance(module, ClassifierModule):
        return sample_glimpses(cfg, module, checkpoint, device)
    model = module.model
    images = torch.zeros(0, *model.image_shape, device=device)
    if cfg.reconstruct:
        try:
            _, loader = load_split(cfg, module, checkpoint, "test", cfg.reconstruct)
            images = next(iter(loader))[0][: cfg.reconstruct].to(device)
        except (FileNotFoundError, ConfigError) as err:
            print(f"reconstructions skipped: they need the data set ({str(err).splitlines()[0]})")
    noise, recon_noise = fixed_noise(model, cfg.n, len(images), cfg.seed, device)
    folder = Path(cfg.paths.output_dir)
    files = render_all(model, images, noise, folder, cfg.animated, cfg.strip_every, cfg.scale, recon_noise)
    for key, path in files.items():
        print(f"{key}: {path}")
    return files


def sample_glimpses(cfg: DictConfig, module: ClassifierModule, checkpoint: dict, device: torch.device) -> dict:
    """sample.py for the attention classifier: ``reconstruct`` test images with their glimpse windows."""
    if not cfg.reconstruct:
        raise ConfigError(
            "reconstruct=0 is not allowed for a classifier's checkpoint: its pictures are the glimpses "
            "it takes of test images; choose how many, e.g. reconstruct=16"
        )
    _, loader = load_split(cfg, module, checkpoint, "test", cfg.reconstruct)
    images, labels = next(iter(loader))
    files = glimpse_trajectories(
        module.model,
        images[: cfg.reconstruct].to(device),
        labels[: cfg.reconstruct],
        Path(cfg.paths.output_dir),
        cfg.scale,
    )
    for key, path in files.items():
        print(f"{key}: {path}")
    return files
