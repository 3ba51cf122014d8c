"""Callbacks: pictures in front of the researcher each validation epoch (DRAW's drawings, the classifier's
glimpses); what a resume needs, in each checkpoint."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, WeightAveraging
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from draw_exp.data import unpack_batch
from draw_exp.data.order import batches_counted
from draw_exp.errors import ConfigError, check_int_range
from draw_exp.pictures import fixed_noise, glimpse_trajectories, render_all


class Pictures(pl.Callback):
    """Each validation epoch, on rank zero: samples from fixed noise (the same z every epoch, so epochs compare),
    reconstructions of the first validation images, the drawing animations with attention windows, and the
    KL per step. Files go to ``<run folder>/pictures/step<global step>/`` (the trainer's default_root_dir);
    W&B also receives them as images and videos. The same files for every logger."""

    def __init__(
        self,
        num_images: int = 64,
        animated: int = 16,
        strip_every: int = 8,
        scale: int = 3,
        seed: int = 0,
        every_n_epochs: int = 1,
    ):
        self.num_images = check_int_range("callbacks.pictures.num_images", num_images, 1)
        self.animated = check_int_range("callbacks.pictures.animated", animated, 1)
        self.strip_every = check_int_range("callbacks.pictures.strip_every", strip_every, 1)
        self.scale = check_int_range("callbacks.pictures.scale", scale, 1)
        self.seed = check_int_range("callbacks.pictures.seed", seed, 0)
        self.every_n_epochs = check_int_range("callbacks.pictures.every_n_epochs", every_n_epochs, 1)
        self._val_images: torch.Tensor | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            images = unpack_batch(batch)[0]
            self._val_images = images[: self.num_images].detach()

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or self._val_images is None or trainer.current_epoch % self.every_n_epochs:
            return
        model = pl_module.model
        noise, recon_noise = fixed_noise(model, self.num_images, len(self._val_images), self.seed, pl_module.device)
        files = render_all(
            model,
            self._val_images,
            noise,
            pictures_folder(trainer),
            self.animated,
            self.strip_every,
            self.scale,
            recon_noise,
        )
        send_pictures(trainer, files)


def pictures_folder(trainer: pl.Trainer) -> str:
    return os.path.join(trainer.default_root_dir, "pictures", f"step{trainer.global_step:08d}")


def send_pictures(trainer: pl.Trainer, files: dict) -> None:
    """The picture files to W&B, when it is a logger: GIFs as videos, tables (CSV) as W&B's own charts, the rest as
    images."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            for key, path in files.items():
                if path.suffix == ".csv":
                    logger.log_metrics({f"charts/{key}": native_bar_chart(path)}, step=trainer.global_step)
                elif path.suffix == ".gif":
                    logger.log_video(f"pictures/{key}", [str(path)], step=trainer.global_step, format=["gif"])
                else:
                    logger.log_image(f"pictures/{key}", [str(path)], step=trainer.global_step)


def native_bar_chart(path: Path):
    """A W&B bar chart of a two-column CSV (its header names the axes), e.g. the KL per step: interactive in W&B,
    where the PNG beside it is a picture."""
    import wandb

    header, *rows = (line.split(",") for line in path.read_text().splitlines())
    table = wandb.Table(columns=header, data=[[int(x), float(y)] for x, y in rows])
    return wandb.plot.bar(table, header[0], header[1], title=f"{path.stem.replace('_', ' ')} ({header[1]})")


class GlimpsePictures(pl.Callback):
    """For the attention classifier: every ``every_n_epochs`` validations, on rank zero, the first ``num_images``
    validation images with their glimpse windows (one colour per step) and the predicted class, to
    ``<run folder>/pictures/step<global step>/glimpses.png`` and to W&B."""

    def __init__(self, num_images: int = 16, scale: int = 2, every_n_epochs: int = 1):
        self.num_images = check_int_range("callbacks.glimpses.num_images", num_images, 1)
        self.scale = check_int_range("callbacks.glimpses.scale", scale, 1)
        self.every_n_epochs = check_int_range("callbacks.glimpses.every_n_epochs", every_n_epochs, 1)
        self.val_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self.val_batch = (batch[0][: self.num_images].detach(), batch[1][: self.num_images].detach())

    @rank_zero_only
    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or self.val_batch is None or trainer.current_epoch % self.every_n_epochs:
            return
        send_pictures(
            trainer, glimpse_trajectories(pl_module.model, *self.val_batch, pictures_folder(trainer), self.scale)
        )


class ExponentialMovingAverage(WeightAveraging):
    """Polyak averaging: an exponential moving average of the weights, ``average ← decay·average + (1 − decay)·w``
    after every optimiser step from ``start_step`` on (the first such step copies the weights), is what validation
    measures, what the best checkpoint is chosen by, what checkpoints hold as ``state_dict`` (so evaluate.py,
    sample.py, ``init_from`` and the slim copies read the average; the raw weights go in ``current_model_state``
    for resumes) and what the run tests and keeps at the end. Lightning's WeightAveraging does the work; this
    adds the start step, and keeps the test on the average (Lightning's would reload the raw weights there)."""

    def __init__(self, decay: float = 0.999, start_step: int = 0):
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1:
            raise ConfigError(
                f"callbacks.ema.decay={decay!r} is not allowed: must be a number in (0, 1), "
                "the weight the average keeps at each step (0.999 averages over about 1,000 steps)"
            )
        self.start_step = check_int_range("callbacks.ema.start_step", start_step, 0)
        self.decay = float(decay)
        super().__init__(multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(self.decay))

    def should_update(self, step_idx=None, epoch_idx=None) -> bool:
        return step_idx is not None and step_idx >= self.start_step

    def averaging(self) -> bool:
        """Whether the average has taken in a step yet; before that it is only a copy of the initial weights."""
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    # No optimiser step runs during a validation, so averaging() answers the same at its start and its end: the
    # swap in and the swap back always pair.
    def on_validation_epoch_start(self, trainer, pl_module):
        if self.averaging():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module):
        if self.averaging():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if self.averaging():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        # Outside fitting (the run's test of its best checkpoint) the module already holds the average.
        if trainer.state.fn == "fit" and "current_model_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer, pl_module):
        if self.averaging():
            super().on_train_end(trainer, pl_module)


class PeriodicCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` optimiser steps, except at an epoch's last batch.

    A checkpoint saved there holds an epoch whose training is done but whose validation has not run; a run killed
    during that validation and resumed from it would go on to the next epoch, and that epoch's validation (and its
    best checkpoint) would be lost. Skipping that one save, the resume starts from the save before it and validates
    the epoch; the end-of-validation save (``checkpoint``'s ``save_last``) writes ``last.ckpt`` right after."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx + 1 >= trainer.num_training_batches:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class ElapsedTime(pl.Callback):
    """Logs ``time/elapsed_s`` at every validation: the wall time of training so far, start-up and compilation
    included, resumed runs counting the time before the stop (kept in checkpoints), so that learning curves can
    be drawn against wall time as well as steps."""

    def __init__(self):
        self.before = 0.0  # seconds of this run before the current process (from the checkpoint)
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.start

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            pl_module.log("time/elapsed_s", self.elapsed(), sync_dist=False, rank_zero_only=True)

    def state_dict(self) -> dict:
        return {"elapsed_s": self.elapsed()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.before = state_dict["elapsed_s"]
        self.start = time.monotonic()


class SmoothedMetric(pl.Callback):
    """Logs ``<metric>_smoothed``: the mean of ``metric`` over the last ``window`` validations, for choosing the
    best checkpoint (``callbacks.checkpoint.monitor``) on a less noisy figure than one validation's. The
    classifier's validation error on 5,000 images moves by ±0.28 points (one standard error) between checkpoints
    that differ by 0.1–0.2 in truth, so the minimum over hundreds of validations picks the luckiest, not the best
    (docs/experiments.md). Until ``window`` validations have run the figure is NaN, which ModelCheckpoint ranks last
    in either mode: a mean of fewer is no better than one validation. The window is kept in checkpoints, so a
    resumed run smooths as the uninterrupted one."""

    def __init__(self, metric: str = "val/error", window: int = 10):
        self.metric = metric
        self.window = check_int_range("callbacks.smoothing.window", window, 1)
        self.values: list[float] = []  # the last `window` values of metric, oldest first

    @property
    def name(self) -> str:
        return f"{self.metric}_smoothed"

    @property
    def state_key(self) -> str:  # two of them (two metrics) keep two windows in a checkpoint
        return self._generate_state_key(metric=self.metric, window=self.window)

    def on_validation_epoch_end(self, trainer, pl_module):
        if self.metric not in trainer.callback_metrics:
            logged = ", ".join(sorted(k for k in trainer.callback_metrics if k.startswith("val/")))
            raise ConfigError(
                f"callbacks.smoothing.metric={self.metric!r} is not allowed: this run's validation logs {logged}"
            )
        if trainer.sanity_checking:
            return
        self.values = [*self.values, float(trainer.callback_metrics[self.metric])][-self.window :]
        mean = sum(self.values) / self.window if len(self.values) == self.window else float("nan")
        pl_module.log(self.name, mean, sync_dist=False)

    def state_dict(self) -> dict:
        return {"values": list(self.values)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.values = list(state_dict["values"])[-self.window :]


class ResumeState(pl.Callback):
    """Puts in each checkpoint what Lightning leaves out but an exact resume needs: the random number generators'
    states (torch, CUDA, numpy, python: the next batch order and the next noise) and the W&B run id (so a resumed
    run continues the same W&B run). Plain values and tensors only, so checkpoints load with ``weights_only=True``.

    Under DDP the checkpoint holds rank zero's generators and every rank restores them, as every rank starts
    from the same seed.

    A run stopped in mid-epoch (``trainer.max_time``) ends that epoch as if it were whole, and its checkpoint says
    so: resumed, the run would begin a new epoch. The checkpoint notes the stop, and the resumed run goes on with the
    cut epoch as a run resumed after a crash does: the rest of its order (``draw_exp.data.order``), its validation at
    its end, and the uninterrupted run's epoch numbers."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.should_stop:
            taken = batches_counted(trainer)
            checkpoint["stopped_mid_epoch"] = 0 < taken < trainer.num_training_batches
        kind, keys, position, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
            "python": random.getstate(),
        }
        checkpoint["wandb_run_id"] = next((lg.version for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        # Lightning restores its loops after the callbacks: an epoch marked unfinished here is one it goes on with.
        epochs = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress")
        if checkpoint.get("stopped_mid_epoch") and epochs:
            for count in (epochs["current"], epochs["total"]):
                if count["processed"] == count["started"]:  # the stop counted the epoch as processed
                    count["processed"] -= 1
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        kind, keys, position, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
