"""The LightningModule: losses, metrics, logging and the optimiser around the DRAW model."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MeanMetric

from draw_exp.data import unpack_batch
from draw_exp.errors import check_choice, check_int_range
from draw_exp.likelihoods import build_likelihood
from draw_exp.model import DRAW, DrawOutput
from draw_exp.optim import adam, check_optimiser, linear_warmup, lr_factor

STAGES = ("train", "val", "test")
TERMS = ("recon", "kl", "loss")
NONFINITE = ("error", "skip")
ENGINE_OF_OLD_COMPILE = {"default": "handwritten_bptt", "reduce-overhead": "fused_loop_cudagraphs"}


class NonFiniteLossError(FloatingPointError):
    """The training loss is NaN or infinite; the message names the step and the loss terms."""


class DrawModule(pl.LightningModule):
    """Trains DRAW by the negative ELBO, in nats per image.

    Takes plain hyperparameters only, so ``DrawModule.load_from_checkpoint(path)`` rebuilds the model alone.
    ``attention`` is the ``attention`` config group: ``{"type": "none" | "gaussian", "read_size", "write_size"}``;
    ``likelihood`` the ``likelihood`` group: ``{"type": "bernoulli" | "discretized_logistic", ...}``.

    Batches are ``(images, indices)`` (or bare images). Validation and test draw each image's noise from a
    generator seeded by ``eval_noise_seed`` and the image's index, so their bound does not depend on the batch
    size, the number of devices or the global RNG. ``kl_warmup_steps``: the training objective weighs the KL term
    by a factor rising linearly to 1 over that many optimiser steps (0: the ELBO from the start); every logged
    term and every validation and test bound is the unweighted ELBO. ``nonfinite``: what a NaN or infinite
    training loss does: ``error`` stops with the step and the terms named, ``skip`` skips that batch (on every
    rank) and counts it.
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
        engine: str = "auto",
        eval_noise_seed: int = 0,
        nonfinite: str = "error",
        max_skipped_batches: int = 20,
        lr_warmup_steps: int = 0,
        lr_half_life_steps: int | None = None,
        kl_warmup_steps: int = 0,
        weight_decay: float = 0.0,
        compile: str | None = None,  # noqa: A002 (the hyperparameter's name in old checkpoints)
    ):
        super().__init__()
        check_optimiser(lr, betas, lr_warmup_steps, lr_half_life_steps, weight_decay)
        check_int_range("model.eval_noise_seed", eval_noise_seed, 0)
        check_choice("model.nonfinite", nonfinite, NONFINITE)
        check_int_range("model.max_skipped_batches", max_skipped_batches, 0)
        check_int_range("model.kl_warmup_steps", kl_warmup_steps, 0)
        if compile is not None:  # checkpoints written before model.engine existed name their engine this way
            engine = ENGINE_OF_OLD_COMPILE.get(compile, compile)
        attention = dict(attention or {"type": "gaussian", "read_size": 2, "write_size": 5})
        likelihood = dict(likelihood or {"type": "bernoulli"})
        # Plain containers only: the checkpoint then loads with torch.load(weights_only=True).
        self.save_hyperparameters(
            {
                "image_shape": [int(s) for s in image_shape],
                "T": T,
                "latent_size": latent_size,
                "lstm_size": lstm_size,
                "attention": dict(attention),
                "lr": float(lr),
                "betas": [float(b) for b in betas],
                "likelihood": dict(likelihood),
                "engine": engine,
                "eval_noise_seed": eval_noise_seed,
                "nonfinite": nonfinite,
                "max_skipped_batches": max_skipped_batches,
                "lr_warmup_steps": lr_warmup_steps,
                "lr_half_life_steps": lr_half_life_steps,
                "kl_warmup_steps": kl_warmup_steps,
                "weight_decay": float(weight_decay),
            }
        )
        attention_type = attention.pop("type", "gaussian")
        self.model = DRAW(tuple(image_shape), T, latent_size, lstm_size, attention_type, **attention, engine=engine)
        self.likelihood = build_likelihood(likelihood.pop("type", "bernoulli"), image_shape, **likelihood)
        self.dims = math.prod(image_shape)
        # One running mean per logged number: exact means over a whole split, synchronised across devices.
        eval_terms = ["nll_bound"] + (["bits_per_dim"] if self.likelihood.bits_per_dim else [])
        names = [f"{stage}_{term}" for stage in STAGES for term in TERMS]
        names += [f"{stage}_{term}" for stage in ("val", "test") for term in eval_terms]
        self.metrics = nn.ModuleDict({name: MeanMetric() for name in names})
        self.skipped_batches = 0  # batches skipped for a non-finite loss (nonfinite=skip), since this process began

    def bits_per_dim(self, nats):
        """Nats per image → bits per dimension (pixel and channel)."""
        return nats / (self.dims * math.log(2))

    def forward(self, x: torch.Tensor, **kwargs) -> DrawOutput:
        return self.model(x, **kwargs)

    def eval_noise(self, indices: torch.Tensor) -> torch.Tensor:
        """The standard-normal draws ``[T, B, latent_size]`` for the images at ``indices``, the same on any device."""
        generator, draws = torch.Generator(), []
        for index in indices.tolist():
            # CPU generators keep 32 bits of a seed: mix seed and index within them (odd multipliers, so for one
            # seed every index below 2**32 gets its own stream).
            generator.manual_seed((index * 0x9E3779B1 + self.hparams.eval_noise_seed * 0x85EBCA77) & 0xFFFFFFFF)
            draws.append(torch.randn(self.model.T, self.model.latent_size, generator=generator))
        return torch.stack(draws, dim=1).to(self.device)

    def loss_terms(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-image terms ``[B]`` in nats: reconstruction −log D(x | σ(c_T)), Σ_t KL, and their sum."""
        out = self.model(x, noise=noise)
        recon = self.likelihood.nll(out.canvas_logits, x)
        kl = out.kl.sum(dim=1)
        return {"recon": recon, "kl": kl, "loss": recon + kl}

    def evaluation_terms(self, x: torch.Tensor, indices: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """:meth:`loss_terms` as validation, test and evaluate.py take them: each image's noise from
        ``eval_noise_seed`` and its index in the split (fresh draws for images without an index)."""
        return self.loss_terms(x, None if indices is None else self.eval_noise(indices))

    def log_terms(self, terms: dict[str, torch.Tensor], stage: str, batch_size: int) -> None:
        for term, value in terms.items():
            metric = self.metrics[f"{stage}_{term}"]
            metric.update(value.detach())
            if stage == "train":  # this batch's mean, and the epoch's running mean
                self.log(
                    f"train/{term}_step",
                    value.detach().mean(),
                    on_step=True,
                    on_epoch=False,
                    prog_bar=term == "loss",
                    batch_size=batch_size,
                )
                self.log(f"train/{term}_epoch", metric, on_step=False, on_epoch=True, batch_size=batch_size)
            else:
                self.log(f"{stage}/{term}", metric, on_epoch=True, prog_bar=term == "nll_bound", batch_size=batch_size)

    def log_skipped_step(self, batch_size: int) -> None:
        """A skipped batch has no loss: its step-level terms are logged as NaN, never as the last batch's values
        (which a logger would otherwise repeat, and a flat curve would hide the divergence)."""
        for term in TERMS:
            self.log(
                f"train/{term}_step",
                float("nan"),
                on_step=True,
                on_epoch=False,
                prog_bar=term == "loss",
                batch_size=batch_size,
            )
        self.log("train/skipped_batches", float(self.skipped_batches), on_step=True, on_epoch=False)

    def training_step(self, batch, batch_idx):
        x = unpack_batch(batch)[0]
        terms = self.loss_terms(x)
        loss = terms["loss"].mean()
        kl_weight = self.kl_weight(self.global_step)
        if kl_weight < 1:  # KL warm-up: the objective is not the ELBO yet; the logged terms still are
            loss = (terms["recon"] + kl_weight * terms["kl"]).mean()
            self.log("train/kl_weight", kl_weight, on_step=True, on_epoch=False, batch_size=x.shape[0])
        # Every rank must take the same branch, or DDP's gradient all-reduce would hang.
        if not self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True):
            message = self.nonfinite_message(terms, batch_idx)
            if self.hparams.nonfinite == "error":
                raise NonFiniteLossError(message)
            self.skipped_batches += 1
            if self.skipped_batches > self.hparams.max_skipped_batches:
                raise NonFiniteLossError(
                    f"{self.skipped_batches} batches skipped for a non-finite loss, more than "
                    f"model.max_skipped_batches={self.hparams.max_skipped_batches}: training has diverged. "
                    f"Last: {message}"
                )
            rank_zero_warn(f"skipped: {message}")
            self.log_skipped_step(x.shape[0])
            return None  # Lightning skips backward and the optimiser step for this batch
        self.log_terms(terms, "train", x.shape[0])
        return loss

    def nonfinite_message(self, terms: dict[str, torch.Tensor], batch_idx: int) -> str:
        means = ", ".join(f"{name} {value.mean().item():.4g}" for name, value in terms.items())
        return (
            f"non-finite training loss at global step {self.global_step} (epoch {self.current_epoch}, batch "
            f"{batch_idx}); mean nats per image on this rank: {means}. Try a lower model.lr or "
            "trainer.gradient_clip_val"
            + (", or set model.nonfinite=skip to skip such batches." if self.hparams.nonfinite == "error" else ".")
        )

    def evaluation_step(self, batch, stage: str) -> None:
        x, indices = unpack_batch(batch)
        terms = self.evaluation_terms(x, indices)
        terms["nll_bound"] = terms["loss"]  # the negative ELBO, the paper's reported metric
        if self.likelihood.bits_per_dim:
            terms["bits_per_dim"] = self.bits_per_dim(terms["loss"])
        self.log_terms(terms, stage, x.shape[0])

    def validation_step(self, batch, batch_idx):
        self.evaluation_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self.evaluation_step(batch, "test")

    def lr_factor(self, step: int) -> float:
        """The learning rate at optimiser step ``step`` over ``model.lr`` (see :func:`draw_exp.optim.lr_factor`)."""
        return lr_factor(step, self.hparams.lr_warmup_steps, self.hparams.lr_half_life_steps)

    def kl_weight(self, step: int) -> float:
        """The weight of the KL term in the training objective at optimiser step ``step``: (step + 1) /
        ``kl_warmup_steps`` up to 1 (Bowman et al., 2016), so the model learns to use its latents before their cost
        is paid in full."""
        return linear_warmup(step, self.hparams.kl_warmup_steps)

    def configure_optimizers(self):
        h = self.hparams
        return adam(self.parameters(), h.lr, h.betas, h.lr_warmup_steps, h.lr_half_life_steps, h.weight_decay)
