"""The bodies of evaluate.py and sample.py: load a checkpoint, its data, and do the one job."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from draw_exp.checkpoints import read_checkpoint
from draw_exp.errors import ConfigError, check_choice, check_int_range
from draw_exp.evaluation import evaluate, format_table
from draw_exp.lit_module import DrawModule
from draw_exp.pictures import render_all

def resolve_device(name: str) -> torch.device:
    check_choice("device", name, ("auto", "cpu", "cuda"))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_checkpoint(path: str, device: torch.device) -> DrawModule:
    checkpoint = read_checkpoint(path)  # weights_only; a missing or damaged file is named
    module = DrawModule(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.to(device).eval()


def load_split(cfg: DictConfig, module: DrawModule, split: str):
    datamodule = instantiate(cfg.data)
    if tuple(datamodule.image_shape) != tuple(module.hparams.image_shape):
        raise ConfigError(f"data={cfg.data._target_} serves images of shape {tuple(datamodule.image_shape)}, but the "
                          f"checkpoint was trained on {tuple(module.hparams.image_shape)}: choose its data set with data=...")
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule, datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()


def run_evaluate(cfg: DictConfig) -> list[dict]:
    check_choice("split", cfg.split, ("test", "val"))
    ks = list(cfg.iw_samples) if isinstance(cfg.iw_samples, (list, ListConfig)) else [cfg.iw_samples]
    for k in ks:
        check_int_range("iw_samples", k, 1)
    check_int_range("max_batch", cfg.max_batch, 1)
    device = resolve_device(cfg.device)
    pl.seed_everything(cfg.seed)
    module = load_checkpoint(cfg.ckpt_path, device)
    _, loader = load_split(cfg, module, cfg.split)
    rows = evaluate(module, loader, ks, cfg.max_batch, device, cfg.limit_images)
    for row in rows:
        row.update({"data": cfg.data._target_.rsplit(".", 1)[-1], "split": cfg.split, "checkpoint": str(cfg.ckpt_path)})
    print(format_table(rows))
    output = Path(cfg.output) if cfg.output else Path(cfg.ckpt_path).with_suffix(f".{cfg.split}.eval.json")
    output.write_text(json.dumps(rows, indent=2))
    print(f"written {output}")
    return rows


def run_sample(cfg: DictConfig) -> dict:
    check_int_range("n", cfg.n, 1)
    device = resolve_device(cfg.device)
    pl.seed_everything(cfg.seed)
    module = load_checkpoint(cfg.ckpt_path, device)
    model = module.model
    if cfg.reconstruct:
        _, loader = load_split(cfg, module, "test")
        images = next(iter(loader))[0][: cfg.reconstruct].to(device)
    else:
        images = torch.zeros(0, *model.image_shape, device=device)
    noise = torch.randn(model.T, cfg.n, model.latent_size, device=device)
    folder = Path(cfg.paths.output_dir)
    files = render_all(model, images, noise, folder, cfg.animated, cfg.strip_every, cfg.scale)
    for key, path in files.items():
        print(f"{key}: {path}")
    return files
