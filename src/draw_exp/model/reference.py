"""The textbook DRAW loop: one LSTMCell call per step, separate filterbank evaluations and glimpses.

The specification that every faster engine of :class:`draw_exp.model.draw.DRAW` is tested against (same weights,
same noise, same loss and gradients) and measured against in ``bench/train_step.py``; it trains as
``model.engine=textbook``, the place to try a new idea.
"""

from __future__ import annotations

import torch

from draw_exp.model.attention import GaussianAttention, glimpse, scatter
from draw_exp.model.draw import DRAW, DrawOutput
from draw_exp.model.latent import gaussian_kl, log_ratio


def reference_read(attention, x, x_err, h_dec):
    if not isinstance(attention, GaussianAttention):
        return torch.cat([x.flatten(1), x_err.flatten(1)], dim=1)
    params = attention.attention_params(attention.read_head(h_dec), attention.read_size)
    fx, fy = attention.filterbanks(params, attention.read_size)
    gamma = params.gamma[:, None]
    return torch.cat([gamma * glimpse(x, fx, fy).flatten(1), gamma * glimpse(x_err, fx, fy).flatten(1)], dim=1)


def reference_write(attention, h_dec):
    if not isinstance(attention, GaussianAttention):
        return attention.write_linear(h_dec).view(-1, *attention.image_shape)
    params = attention.attention_params(attention.write_head(h_dec), attention.write_size)
    fx, fy = attention.filterbanks(params, attention.write_size)
    patch = attention.write_patch(h_dec).view(-1, attention.image_shape[0], attention.write_size, attention.write_size)
    return scatter(patch, fx, fy) / params.gamma[:, None, None, None]


def reference_forward(model: DRAW, x: torch.Tensor, noise: torch.Tensor, return_log_ratio: bool = False) -> DrawOutput:
    """The paper's recurrence written step by step with ``model``'s parameters; ``noise`` ``[T, B, latent_size]``.
    ``return_log_ratio`` adds log q(z_t | x) − log p(z_t) at the drawn z_t ``[B, T]``, for importance weights."""
    canvas, enc_state, dec_state = model._initial(x.shape[0])
    kls, log_ratios = [], []
    for t in range(model.T):
        x_err = x - torch.sigmoid(canvas)
        r = reference_read(model.attention, x, x_err, dec_state[0])
        enc_state = model.encoder(torch.cat([r, dec_state[0]], dim=1), enc_state)
        mu, log_sigma = model.posterior(enc_state[0]).chunk(2, dim=-1)
        z = mu + torch.exp(log_sigma) * noise[t]
        kls.append(gaussian_kl(mu, log_sigma))
        log_ratios.append(log_ratio(z, noise[t], log_sigma))
        dec_state = model.decoder(z, dec_state)
        canvas = canvas + reference_write(model.attention, dec_state[0])
    return DrawOutput(canvas_logits=canvas, kl=torch.stack(kls, dim=1),
                      log_ratio=torch.stack(log_ratios, dim=1) if return_log_ratio else None)
