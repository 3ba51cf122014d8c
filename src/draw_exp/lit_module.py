"""The LightningModule: losses, metrics, logging and the optimiser around the DRAW model."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from draw_exp.errors import ConfigError, check_choice
from draw_exp.likelihoods import build_likelihood
from draw_exp.model import DRAW, DrawOutput

STAGES = ("train", "val", "test")
TERMS = ("recon", "kl", "loss")


class DrawModule(pl.LightningModule):
    """Trains DRAW by the negative ELBO, in nats per image.

    Takes plain hyperparameters only, so ``DrawModule.load_from_checkpoint(path)`` rebuilds the model alone.
    ``attention`` is the ``attention`` config group: ``{"type": "none" | "gaussian", "read_size", "write_size"}``;
    ``likelihood`` the ``likelihood`` group: ``{"type": "bernoulli" | "discretized_logistic", ...}``.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        T: int = 64,
        latent_size: int = 100,
        lstm_size: int = 256,
        attention: Mapping | None = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        likelihood: Mapping | None = None,
        compile: str | None = None,
    ):
        super().__init__()
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
            raise ConfigError(f"model.lr={lr!r} is not allowed: must be a number > 0")
        attention = dict(attention or {"type": "gaussian", "read_size": 2, "write_size": 5})
        likelihood = dict(likelihood or {"type": "bernoulli"})
        # Plain containers only: the checkpoint then loads with torch.load(weights_only=True).
        self.save_hyperparameters({
            "image_shape": [int(s) for s in image_shape], "T": T, "latent_size": latent_size, "lstm_size": lstm_size,
            "attention": dict(attention), "lr": float(lr), "betas": [float(b) for b in betas],
            "likelihood": dict(likelihood), "compile": compile,
        })
        attention_type = attention.pop("type", "gaussian")
        self.model = DRAW(tuple(image_shape), T, latent_size, lstm_size, attention_type, **attention)
        if compile is not None:
            check_choice("model.compile", compile, ("default", "reduce-overhead"))
            self.model.compile_step(mode=compile)
        self.likelihood = build_likelihood(likelihood.pop("type", "bernoulli"), image_shape, **likelihood)
        self.dims = math.prod(image_shape)
        # One running mean per logged number: exact means over a whole split, synchronised across devices.
        eval_terms = ["nll_bound"] + (["bits_per_dim"] if self.likelihood.bits_per_dim else [])
        names = [f"{stage}_{term}" for stage in STAGES for term in TERMS]
        names += [f"{stage}_{term}" for stage in ("val", "test") for term in eval_terms]
        self.metrics = nn.ModuleDict({name: MeanMetric() for name in names})

    def bits_per_dim(self, nats):
        """Nats per image → bits per dimension (pixel and channel)."""
        return nats / (self.dims * math.log(2))

    def forward(self, x: torch.Tensor, **kwargs) -> DrawOutput:
        return self.model(x, **kwargs)

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image terms ``[B]`` in nats: reconstruction −log D(x | σ(c_T)), Σ_t KL, and their sum."""
        out = self.model(x)
        recon = self.likelihood.nll(out.canvas_logits, x)
        kl = out.kl.sum(dim=1)
        return {"recon": recon, "kl": kl, "loss": recon + kl}

    def _shared_step(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        terms = self.loss_terms(x)
        if stage != "train":
            terms["nll_bound"] = terms["loss"]  # the negative ELBO, the paper's reported metric
            if self.likelihood.bits_per_dim:
                terms["bits_per_dim"] = self.bits_per_dim(terms["loss"])
        for term, value in terms.items():
            metric = self.metrics[f"{stage}_{term}"]
            if stage == "train":
                metric(value.detach())  # forward() also keeps this batch's value for the step-level log
            else:
                metric.update(value)
            self.log(f"{stage}/{term}", metric, on_step=stage == "train", on_epoch=True,
                     prog_bar=term in ("loss", "nll_bound"), batch_size=x.shape[0])
        return terms["loss"].mean()

    def training_step(self, batch, batch_idx):
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
