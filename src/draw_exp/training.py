"""The run itself: instantiate what the config names, fit, then test the best checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from draw_exp.checkpoints import CheckpointError, read_checkpoint
from draw_exp.distributed import launch_ddp_ranks_with_job_overrides, one_job_of_ddp
from draw_exp.errors import check_int_range

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
                "(ckpt_path=<run folder>/checkpoints/last.ckpt).")
    return str(path), read_checkpoint(path)


def build(cfg: DictConfig, checkpoint: dict | None = None):
    """Instantiate datamodule, module, callbacks, logger and trainer. Reads no data: a bad value fails here.
    ``checkpoint``: the one being resumed; its W&B run id makes the logger continue that run."""
    check_int_range("seed", cfg.seed, 0)
    run_id = (checkpoint or {}).get("wandb_run_id")
    if run_id and cfg.get("logger") and "id" in cfg.logger and cfg.logger.id is None:
        with open_dict(cfg):
            cfg.logger.id = run_id
    datamodule = instantiate(cfg.data)
    likelihood = OmegaConf.to_container(cfg.likelihood, resolve=True)
    if likelihood["type"] == "auto":
        likelihood["type"] = datamodule.default_likelihood
    module = instantiate(cfg.model, image_shape=datamodule.image_shape, likelihood=likelihood)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    return datamodule, module, trainer


def log_run_settings(cfg: DictConfig, datamodule, trainer) -> None:
    """The whole resolved config and both batch sizes, to every logger (rank zero) and the console."""
    per_device = datamodule.batch_size
    effective = per_device * trainer.world_size * trainer.accumulate_grad_batches
    log.info("batch size %d per device, %d effective (%d devices x %d nodes, accumulating %d)", per_device, effective,
             trainer.num_devices, trainer.num_nodes, trainer.accumulate_grad_batches)
    settings = {"config": OmegaConf.to_container(cfg, resolve=True), "batch_size_per_device": per_device,
                "effective_batch_size": effective, "world_size": trainer.world_size}
    for logger in trainer.loggers:
        logger.log_hyperparams(settings)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test; returns the test metrics (``test/nll_bound`` is the paper's number, in nats)."""
    ckpt_path, checkpoint = resume_checkpoint(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    launch_ddp_ranks_with_job_overrides()
    with one_job_of_ddp():
        datamodule, module, trainer = build(cfg, checkpoint)
        log_run_settings(cfg, datamodule, trainer)
        # weights_only: a checkpoint is data, never code (see README, "What a checkpoint may contain").
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        log.info("testing %s", best or "the final weights")
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    return results[0] if results else {}
