"""The run itself: instantiate what the config names, fit, then test the best checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from draw_exp.checkpoints import CheckpointError, read_checkpoint
from draw_exp.distributed import launch_ddp_ranks_with_job_overrides, one_job_of_ddp
from draw_exp.errors import ConfigError, check_choice, check_int_range, instantiate_checked

log = logging.getLogger(__name__)


def resume_checkpoint(cfg: DictConfig) -> tuple[str | None, dict | None]:
    """The checkpoint ``ckpt_path`` names (``last``: this run folder's checkpoints/last.ckpt) and its contents,
    read here, before any work, so that a missing or damaged file is reported at once, by name."""
    path = cfg.get("ckpt_path")
    if path is None:
        return None, None
    if path == "last":
        path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(
                f"ckpt_path=last: no checkpoints/last.ckpt in the run folder {path.parents[1]}. To resume a run, "
                "name its folder (hydra.run.dir=<run folder> ckpt_path=last) or its file "
                "(ckpt_path=<run folder>/checkpoints/last.ckpt)."
            )
    checkpoint = read_checkpoint(path)
    remove_stale_temporary_files(Path(path).parent)
    return str(path), checkpoint


def remove_stale_temporary_files(folder: Path) -> None:
    """A kill during a save leaves its temporary file (``.<name>.*.tmp``, see save_atomically). A run is the only
    writer of its own checkpoint folder (run folders are never shared), and so is a resumed run of the resumed
    checkpoint's folder: those left there are removed as the run starts."""
    for stale in folder.glob(".*.ckpt.*.tmp"):
        log.info("removing %s, left by a save that was interrupted", stale)
        stale.unlink(missing_ok=True)


def initial_weights(cfg: DictConfig) -> dict | None:
    """The weights ``init_from`` names (any draw-exp checkpoint, slim ones included), read and checked against the
    configured model's size before any work. The run starts from them at step 0 with a fresh optimiser: unlike
    ``ckpt_path``, which continues a run. A resume (``ckpt_path`` set too) restores its own weights instead."""
    path = cfg.get("init_from")
    if path is None or cfg.get("ckpt_path") is not None:
        return None
    checkpoint = read_checkpoint(path, key="init_from")
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"init_from={str(path)!r}: this file holds no model weights (no 'state_dict')")
    check_same_model(cfg, checkpoint, str(path), key="init_from")
    return checkpoint["state_dict"]


def load_initial_weights(module: pl.LightningModule, weights: dict, path: str) -> None:
    """Every parameter of ``module`` from ``weights``, or a one-line error naming what does not fit."""
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as err:  # another data set's image shape or likelihood: a list of tensor names and shapes
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise CheckpointError(
            f"init_from={path!r} does not fit the configured model (another data set, likelihood or model?): "
            + (lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__)
        ) from None
    log.info("starting from the weights of %s (step 0, a fresh optimiser)", path)


def check_trainer(trainer: DictConfig) -> None:
    """The trainer keys Lightning would accept silently, or reject with a message that does not name the key."""
    devices, strategy = trainer.get("devices"), str(trainer.get("strategy"))
    if devices != "auto":
        check_int_range("trainer.devices", devices, 1)
        if devices > 1 and not strategy.startswith("ddp"):
            raise ConfigError(
                f"trainer.devices={devices} with trainer.strategy={strategy} is not allowed: several "
                "devices train with DDP; choose trainer=ddp (or trainer.devices=1)"
            )
    check_int_range("trainer.max_steps", trainer.get("max_steps", -1), -1)
    for key in ("check_val_every_n_epoch", "log_every_n_steps"):  # Lightning takes 0 and negative values silently
        if trainer.get(key) is not None:
            check_int_range(f"trainer.{key}", trainer[key], 1)
    if trainer.get("max_epochs") is not None:
        check_int_range("trainer.max_epochs", trainer.max_epochs, -1)
    if trainer.get("profiler") is not None:  # Lightning's message does not name the value
        check_choice("trainer.profiler", trainer.profiler, ("simple", "advanced", "pytorch"))
    clip = trainer.get("gradient_clip_val")
    if clip is not None and (not isinstance(clip, (int, float)) or isinstance(clip, bool) or not clip > 0):
        raise ConfigError(
            f"trainer.gradient_clip_val={clip!r} is not allowed: must be a number > 0, or null for no clipping"
        )


def set_matmul_precision(cfg: DictConfig) -> None:
    """``float32_matmul_precision``, checked and applied for the whole process (each DDP rank runs train()).
    Lightning suggests TF32 on GPUs that have it; the default stays full float32, the precision every engine is
    tested at and every figure in docs/ was measured at, until TF32 is measured to be faster and as good."""
    precision = check_choice(
        "float32_matmul_precision", cfg.get("float32_matmul_precision", "highest"), ("highest", "high", "medium")
    )
    torch.set_float32_matmul_precision(precision)


def check_same_model(cfg: DictConfig, checkpoint: dict, path: str, key: str = "ckpt_path") -> None:
    """A resumed (or ``init_from``) checkpoint must be of the configured model's size: name both sizes, not a
    tensor-shape dump."""
    saved = checkpoint.get("hyper_parameters") or {}
    configured = {
        "T": cfg.T,
        "latent_size": cfg.latent_size,
        "lstm_size": cfg.lstm_size,
        **{f"attention.{k}": v for k, v in cfg.attention.items()},
    }
    trained = {
        **{k: saved[k] for k in ("T", "latent_size", "lstm_size") if k in saved},  # a classifier has no z
        **{f"attention.{k}": v for k, v in (saved.get("attention") or {}).items()},
    }
    differ = [k for k in configured if k in trained and trained[k] != configured[k]]
    if differ:
        raise ConfigError(
            f"{key}={path!r} holds a model of another size: "
            + ", ".join(f"{k}={trained[k]!r} in the checkpoint, {configured[k]!r} configured" for k in differ)
            + ". Use the checkpoint's settings (e.g. the same experiment= preset)."
        )


def build(cfg: DictConfig, checkpoint: dict | None = None):
    """Instantiate datamodule, module, callbacks, logger and trainer. Reads no data: a bad value fails here.
    ``checkpoint``: the one being resumed; its W&B run id makes the logger continue that run."""
    check_trainer(cfg.trainer)
    run_id = (checkpoint or {}).get("wandb_run_id")
    if run_id and cfg.get("logger") and "id" in cfg.logger and cfg.logger.id is None:
        with open_dict(cfg):
            cfg.logger.id = run_id
    datamodule = instantiate_checked(cfg.data)
    # The run's data settings go into every checkpoint, so evaluate.py and sample.py use the same data set.
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data["data_dir"] = str(Path(data["data_dir"]).resolve())
    datamodule.save_hyperparameters(data)
    module_settings = {"image_shape": datamodule.image_shape}
    if "likelihood" in cfg.model:  # DRAW's; the classifier has none
        likelihood = OmegaConf.to_container(cfg.likelihood, resolve=True)
        if likelihood["type"] == "auto":
            likelihood["type"] = datamodule.default_likelihood
        module_settings["likelihood"] = likelihood
    module = instantiate_checked(cfg.model, **module_settings)
    callbacks = [instantiate_checked(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    logger = instantiate_checked(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate_checked(cfg.trainer, callbacks=callbacks, logger=logger)
    return datamodule, module, trainer


def log_run_settings(cfg: DictConfig, datamodule, trainer) -> None:
    """The whole resolved config and both batch sizes, to every logger (rank zero) and the console."""
    per_device = datamodule.batch_size
    effective = per_device * trainer.world_size * trainer.accumulate_grad_batches
    log.info(
        "seed %d; batch size %d per device, %d effective (%d devices x %d nodes, accumulating %d)",
        cfg.seed,
        per_device,
        effective,
        trainer.num_devices,
        trainer.num_nodes,
        trainer.accumulate_grad_batches,
    )
    settings = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "batch_size_per_device": per_device,
        "effective_batch_size": effective,
        "world_size": trainer.world_size,
    }
    for logger in trainer.loggers:
        logger.log_hyperparams(settings)


class RunFailedError(RuntimeError):
    """The run ended, but its result is not a number: it must not pass for a success."""


def config_hash(cfg: DictConfig) -> str:
    """A short hash of the resolved config without Hydra's own node: equal for runs of the same settings."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings.pop("hydra", None)
    settings.get("paths", {}).pop("output_dir", None)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_summary(cfg: DictConfig, trainer: pl.Trainer, results: dict, best: str, seconds: float) -> Path:
    """The run's final figures in ``<run folder>/metrics.json``, whichever logger is on (rank zero writes it)."""
    callback = trainer.checkpoint_callback
    best_score = getattr(callback, "best_model_score", None)
    summary = {
        "test": results,
        f"best_{getattr(callback, 'monitor', None) or 'val/nll_bound'}": None
        if best_score is None
        else float(best_score),
        "best_checkpoint": best or None,
        "global_step": trainer.global_step,
        "epochs_completed": trainer.current_epoch,
        "wall_time_s": round(seconds, 1),
        "config_hash": config_hash(cfg),
    }
    path = Path(cfg.paths.output_dir) / "metrics.json"
    if trainer.is_global_zero:
        path.write_text(json.dumps(summary, indent=2, allow_nan=True))
    return path


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test; returns the test metrics (``test/nll_bound`` is the paper's number, in nats). The final
    figures also go to ``<run folder>/metrics.json``; a test bound that is not a finite number fails the run."""
    start = time.perf_counter()
    check_int_range("seed", cfg.seed, 0, 2**32 - 1)
    set_matmul_precision(cfg)
    ckpt_path, checkpoint = resume_checkpoint(cfg)
    remove_stale_temporary_files(Path(cfg.paths.output_dir) / "checkpoints")  # a run restarted in its folder, too
    if checkpoint is not None:
        check_same_model(cfg, checkpoint, ckpt_path)
    weights = initial_weights(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # logged with the run's settings, after its checks
    launch_ddp_ranks_with_job_overrides()
    with one_job_of_ddp():
        datamodule, module, trainer = build(cfg, checkpoint)
        if trainer.local_rank == 0:  # the data's files before any logger run starts (Lightning's call is then a no-op)
            datamodule.prepare_data()
        if weights is not None:
            load_initial_weights(module, weights, cfg.init_from)
        log_run_settings(cfg, datamodule, trainer)
        # weights_only: a checkpoint is data, never code (see README, "What a checkpoint may contain").
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        log.info("testing %s", best or "the final weights")
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        results = results[0] if results else {}
        path = write_summary(cfg, trainer, results, best, time.perf_counter() - start)
    log.info("final metrics in %s", path)
    fail_unless_finite(results, path)
    return results


def fail_unless_finite(results: dict[str, float], summary: Path) -> None:
    """A run whose test metrics are NaN or infinite has failed, whatever else went well: raise, so it exits
    non-zero, naming them (``summary`` keeps them for inspection)."""
    bad = {k: v for k, v in results.items() if not math.isfinite(v)}
    if bad:
        raise RunFailedError(
            f"the run's test metrics are not finite ({', '.join(f'{k}={v}' for k, v in bad.items())}):"
            f" the model diverged; see {summary}"
        )
