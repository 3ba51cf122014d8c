"""Observation models D(x | c_T): negative log-likelihoods in nats per image.

Both read the canvas through σ(c): the mean image, which is also what DRAW's error image x − σ(c) subtracts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from draw_exp.errors import check_choice, check_int_range, check_number

LIKELIHOODS = ("bernoulli", "discretized_logistic")


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log D(x | σ(logits)) for a Bernoulli per pixel, summed over all but the batch dimension: ``[B]``.

    Computed from the logits, which is exact where σ(c) rounds to 0 or 1 in float32. For colour data the
    normalised intensity in [0, 1] is the target (the paper's choice; not a true compression cost).
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def log_sigmoid_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(σ(a) − σ(b)) for a > b without cancellation: −softplus(−a) − softplus(b) + log(1 − e^{b−a})."""
    return -F.softplus(-a) - F.softplus(b) + torch.log(-torch.expm1(b - a))


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, bins: int = 256
) -> torch.Tensor:
    """log P(x) per element for a logistic of ``mean`` and scale e^``log_scale``, integrated over the bin of x.

    ``x`` and ``mean`` are intensities in [0, 1]; x sits on the grid k/(bins−1). Bin k covers
    [(k−½)/(bins−1), (k+½)/(bins−1)], except that the first bin extends to −∞ and the last to +∞, so the
    probabilities of the ``bins`` values sum to one exactly.
    """
    half_bin = 0.5 / (bins - 1)
    inv_scale = torch.exp(-log_scale)
    upper = (x - mean + half_bin) * inv_scale
    lower = (x - mean - half_bin) * inv_scale
    middle = log_sigmoid_difference(upper, lower)
    first = -F.softplus(-upper)  # log σ(upper): everything below the first bin's upper edge
    last = -F.softplus(lower)  # log(1 − σ(lower))
    k = torch.round(x * (bins - 1))
    return torch.where(k <= 0, first, torch.where(k >= bins - 1, last, middle))


class Bernoulli(nn.Module):
    """The paper's likelihood: a Bernoulli per pixel (and per channel) with probability σ(c_T)."""

    bits_per_dim = False  # only a true code length for binary data

    def nll(self, canvas_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return bernoulli_nll(canvas_logits, x)


class DiscretizedLogistic(nn.Module):
    """A proper likelihood for 8-bit images: per channel, a logistic with mean σ(c_T) and a learned scale,
    integrated over the 256 bins of the pixel's value. Its NLL converts to bits per dimension."""

    bits_per_dim = True

    def __init__(self, channels: int, bins: int = 256, init_scale: float = 0.1):
        super().__init__()
        self.bins = check_int_range("likelihood.bins", bins, 2)
        check_number("likelihood.init_scale", init_scale, 0)
        self.log_scale = nn.Parameter(torch.full((channels, 1, 1), math.log(init_scale)))

    def nll(self, canvas_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_prob = discretized_logistic_log_prob(x, torch.sigmoid(canvas_logits), self.log_scale, self.bins)
        return -log_prob.flatten(1).sum(1)


def build_likelihood(likelihood_type: str, image_shape, bins: int = 256, init_scale: float = 0.1) -> nn.Module:
    """By name (``likelihood.type`` of the config group); ``bins`` and ``init_scale`` apply to the logistic only."""
    check_choice("likelihood.type", likelihood_type, LIKELIHOODS)
    if likelihood_type == "bernoulli":
        return Bernoulli()
    return DiscretizedLogistic(image_shape[0], bins, init_scale)
