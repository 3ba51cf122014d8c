"""The run itself: instantiate what the config names, fit, then test the best checkpoint."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from draw_exp.errors import check_int_range

log = logging.getLogger(__name__)


def build(cfg: DictConfig):
    """Instantiate datamodule, module, callbacks, logger and trainer. Reads no data: a bad value fails here."""
    check_int_range("seed", cfg.seed, 0)
    datamodule = instantiate(cfg.data)
    likelihood = OmegaConf.to_container(cfg.likelihood, resolve=True)
    if likelihood["type"] == "auto":
        likelihood["type"] = datamodule.default_likelihood
    module = instantiate(cfg.model, image_shape=datamodule.image_shape, likelihood=likelihood)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    return datamodule, module, trainer


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test; returns the test metrics (``test/nll_bound`` is the paper's number, in nats)."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    log.info("testing %s", best or "the final weights")
    results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
    return results[0] if results else {}
