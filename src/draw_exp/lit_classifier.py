"""The LightningModule of the paper's attention classifier (cluttered MNIST, Table 1): cross-entropy, accuracy and
error through torchmetrics, Adam (draw_exp.optim, as DrawModule's)."""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from draw_exp.errors import ConfigError, check_int_range
from draw_exp.model.classifier import AttentionClassifier, ClassifierOutput
from draw_exp.optim import adam, check_optimiser

STAGES = ("train", "val", "test")
CHECKPOINT_KIND = "classifier"  # checkpoint["module"]: evaluate.py and sample.py rebuild this module from it


class MulticlassError(MulticlassAccuracy):
    """The classification error in percent, 100·(1 − accuracy): the paper's Table 1 figure."""

    def compute(self) -> torch.Tensor:
        return 100 * (1 - super().compute())


class ClassifierModule(pl.LightningModule):
    """Trains :class:`~draw_exp.model.classifier.AttentionClassifier` by cross-entropy on ``(image, label)`` batches.

    ``attention`` is the ``attention`` config group; the classifier needs ``type: gaussian`` (its glimpses are the
    Gaussian read) and uses ``read_size``. Logs ``{stage}/loss`` (nats per image), ``{stage}/accuracy`` and
    ``{stage}/error`` (percent), exact over each split and across devices.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 100, 100),
        T: int = 8,
        lstm_size: int = 256,
        attention: Mapping | None = None,
        classes: int = 10,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        lr_warmup_steps: int = 0,
        lr_half_life_steps: int | None = None,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        check_optimiser(lr, betas, lr_warmup_steps, lr_half_life_steps, weight_decay)
        attention = dict(attention or {"type": "gaussian", "read_size": 12})
        if attention.get("type") != "gaussian":
            raise ConfigError(
                f"attention.type={attention.get('type')!r} is not allowed for the classifier: it must be "
                "gaussian (the classifier sees the image only through its Gaussian glimpses)"
            )
        self.save_hyperparameters(
            {
                "image_shape": [int(s) for s in image_shape],
                "T": T,
                "lstm_size": lstm_size,
                "attention": dict(attention),
                "classes": classes,
                "lr": float(lr),
                "betas": [float(b) for b in betas],
                "lr_warmup_steps": lr_warmup_steps,
                "lr_half_life_steps": lr_half_life_steps,
                "weight_decay": float(weight_decay),
            }
        )
        check_int_range("model.classes", classes, 2)
        self.model = AttentionClassifier(tuple(image_shape), T, lstm_size, attention.get("read_size"), classes)
        self.metrics = nn.ModuleDict()
        for stage in STAGES:
            self.metrics[f"{stage}_loss"] = MeanMetric()
            self.metrics[f"{stage}_accuracy"] = MulticlassAccuracy(classes, average="micro")
            self.metrics[f"{stage}_error"] = MulticlassError(classes, average="micro")

    def forward(self, x: torch.Tensor) -> ClassifierOutput:
        return self.model(x)

    def step(self, batch, stage: str) -> torch.Tensor:
        x, labels = batch
        logits = self.model(x).logits
        losses = F.cross_entropy(logits, labels, reduction="none")
        self.metrics[f"{stage}_loss"].update(losses.detach())
        for name in ("accuracy", "error"):
            self.metrics[f"{stage}_{name}"].update(logits.detach(), labels)
        for name in ("loss", "accuracy", "error"):
            self.log(
                f"{stage}/{name}",
                self.metrics[f"{stage}_{name}"],
                on_step=False,
                on_epoch=True,
                prog_bar=name == "error",
                batch_size=len(x),
            )
        if stage == "train":
            self.log("train/loss_step", losses.detach().mean(), on_step=True, on_epoch=False, batch_size=len(x))
        return losses.mean()

    def training_step(self, batch, batch_idx):
        return self.step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self.step(batch, "val")

    def test_step(self, batch, batch_idx):
        self.step(batch, "test")

    def configure_optimizers(self):
        h = self.hparams
        return adam(self.parameters(), h.lr, h.betas, h.lr_warmup_steps, h.lr_half_life_steps, h.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["module"] = CHECKPOINT_KIND
