"""Observation models D(x | c_T): negative log-likelihoods in nats per image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log D(x | σ(logits)) for a Bernoulli per pixel, summed over all but the batch dimension: ``[B]``.

    Computed from the logits, which is exact where σ(c) rounds to 0 or 1 in float32.
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
