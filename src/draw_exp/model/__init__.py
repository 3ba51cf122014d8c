"""DRAW core: the model (draw.py), read and write (attention.py), the posterior's KL (latent.py) and the faster
engines that compute the same function (engines/). Knows nothing of Lightning or Hydra."""

from draw_exp.model.attention import (
    ATTENTION_TYPES,
    Attention,
    AttentionParams,
    GaussianAttention,
    NoAttention,
    build_attention,
    filterbank,
    glimpse,
    scatter,
)
from draw_exp.model.draw import DRAW, DrawOutput, DrawState
from draw_exp.model.engines import ENGINES, auto_engine
from draw_exp.model.latent import gaussian_kl

__all__ = [
    "ATTENTION_TYPES",
    "DRAW",
    "ENGINES",
    "Attention",
    "AttentionParams",
    "DrawOutput",
    "DrawState",
    "GaussianAttention",
    "NoAttention",
    "auto_engine",
    "build_attention",
    "filterbank",
    "gaussian_kl",
    "glimpse",
    "scatter",
]
