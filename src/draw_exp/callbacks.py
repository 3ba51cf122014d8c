"""Callbacks that put pictures in front of the researcher each validation epoch."""

from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only
from torchvision.utils import make_grid, save_image


def log_image(trainer: pl.Trainer, key: str, image: torch.Tensor) -> None:
    """Send one ``[C, H, W]`` image in [0, 1] to every logger: W&B as an image, others as a PNG file
    under the run folder (``images/<key>/step<global_step>.png``)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key, [image.float().cpu()], step=trainer.global_step)
        else:
            folder = os.path.join(logger.log_dir or trainer.default_root_dir, "images", key.replace("/", "_"))
            os.makedirs(folder, exist_ok=True)
            save_image(image.float().cpu(), os.path.join(folder, f"step{trainer.global_step:08d}.png"))


class ImageGrids(pl.Callback):
    """Each validation epoch: a grid of samples from fixed noise (the same z every epoch, so epochs compare)
    and a grid pairing validation images with their reconstructions."""

    def __init__(self, num_images: int = 64, seed: int = 0):
        self.num_images = num_images
        self.seed = seed
        self._val_images: torch.Tensor | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self._val_images = batch[: self.num_images].detach()

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.loggers:
            return
        model = pl_module.model
        nrow = max(1, int(self.num_images**0.5))
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(model.T, self.num_images, model.latent_size, generator=generator).to(pl_module.device)
        samples = model.sample(self.num_images, noise=noise)[-1]  # [n, C, H, W] probabilities at step T
        log_image(trainer, "samples", make_grid(samples, nrow=nrow, pad_value=1.0))
        if self._val_images is not None:
            x = self._val_images
            with torch.no_grad():
                recon = torch.sigmoid(model(x).canvas_logits)
            pairs = torch.stack([x, recon], dim=1).flatten(0, 1)  # image, its reconstruction, next image, ...
            log_image(trainer, "reconstructions", make_grid(pairs, nrow=2 * max(1, nrow // 2), pad_value=1.0))
