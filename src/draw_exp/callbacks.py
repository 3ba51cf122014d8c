"""Callbacks that put pictures in front of the researcher each validation epoch."""

from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from draw_exp.pictures import render_all


class Pictures(pl.Callback):
    """Each validation epoch, on rank zero: samples from fixed noise (the same z every epoch, so epochs compare),
    reconstructions of the first validation images, the drawing animations with attention windows, and the
    KL per step. Files go to ``<run folder>/pictures/step<global step>/`` (the trainer's default_root_dir);
    W&B also receives them as images and videos. The same files for every logger."""

    def __init__(self, num_images: int = 64, animated: int = 16, strip_every: int = 8, scale: int = 3,
                 seed: int = 0, every_n_epochs: int = 1):
        self.num_images = num_images
        self.animated = animated
        self.strip_every = strip_every
        self.scale = scale
        self.seed = seed
        self.every_n_epochs = every_n_epochs
        self._val_images: torch.Tensor | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self._val_images = batch[: self.num_images].detach()

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or self._val_images is None or trainer.current_epoch % self.every_n_epochs:
            return
        model = pl_module.model
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(model.T, self.num_images, model.latent_size, generator=generator).to(pl_module.device)
        folder = os.path.join(trainer.default_root_dir, "pictures", f"step{trainer.global_step:08d}")
        files = render_all(model, self._val_images, noise, folder, self.animated, self.strip_every, self.scale)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for key, path in files.items():
                    if path.suffix == ".gif":
                        logger.log_video(f"pictures/{key}", [str(path)], step=trainer.global_step, format=["gif"])
                    else:
                        logger.log_image(f"pictures/{key}", [str(path)], step=trainer.global_step)
