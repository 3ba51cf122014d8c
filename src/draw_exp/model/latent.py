"""The posterior's KL to DRAW's standard-normal prior (the paper's eqs. (10), (11)) and the log-ratio of the
importance-weighted bound, shared by DRAW.forward and the engines."""

from __future__ import annotations

import torch


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the latent dimension ``dim``: ½ Σ (μ² + σ² − 1 − 2 log σ)."""
    return 0.5 * (mu.square() + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(dim)


def log_ratio(z: torch.Tensor, eps: torch.Tensor, log_sigma: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log N(z; μ, σ²) − log N(z; 0, 1) at z = μ + σε, summed over ``dim``: Σ ½z² − ½ε² − log σ (the 2π terms
    cancel). Importance weights need it where the ELBO uses the KL's closed form."""
    return (0.5 * z.square() - 0.5 * eps.square() - log_sigma).sum(dim)
