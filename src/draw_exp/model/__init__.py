"""DRAW core, attention and read/write. Knows nothing of Lightning or Hydra."""

from draw_exp.model.attention import AttentionParams, GaussianAttention, NoAttention, filterbank, glimpse, scatter
from draw_exp.model.draw import ATTENTION_TYPES, DRAW, DrawOutput, build_attention
from draw_exp.model.latent import gaussian_kl

__all__ = [
    "ATTENTION_TYPES",
    "AttentionParams",
    "DRAW",
    "DrawOutput",
    "GaussianAttention",
    "NoAttention",
    "build_attention",
    "filterbank",
    "gaussian_kl",
    "glimpse",
    "scatter",
]
