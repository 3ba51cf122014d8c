"""The posterior's KL to DRAW's standard-normal prior, shared by the step loop and the hand-written recurrence."""

from __future__ import annotations

import torch


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the latent dimension ``dim``: ½ Σ (μ² + σ² − 1 − 2 log σ)."""
    return 0.5 * (mu.square() + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(dim)
