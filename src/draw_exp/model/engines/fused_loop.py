"""The fused step loop (``model.engine=fused_loop``, and ``fused_loop_cudagraphs`` with its step compiled).

The textbook loop under autograd, with the products that read the same tensor done as one: h^dec_t is projected
once per step onto everything that reads it (both attention heads and the write patch, the next encoder input and
the decoder's next hidden gates), the encoder takes [r_t, h^enc_{t−1}] in one product, and one filterbank
evaluation (both axes at once for square images) serves the write of step t and the read of step t+1, which read the
same h^dec_t. Eager, each operation is a kernel launch on a GPU, so the step is written in few operations.

The attention types' fused forms (:class:`FusedNoAttention`, :class:`FusedGaussianAttention`) live here; the
hand-written backward (handwritten_bptt.py) builds its batch-last forms on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from draw_exp.model.attention import (
    Attention,
    AttentionParams,
    GaussianAttention,
    NoAttention,
    glimpse,
    scatter,
)
from draw_exp.model.draw import DRAW, DrawOutput
from draw_exp.model.latent import gaussian_kl, log_ratio


class FusedNoAttention:
    """:class:`NoAttention` with its write as the heads of the fused projection. r_t's x half is the same every
    step, so its encoder product is made once (``step_invariant_features``); the step reads x̂_t alone."""

    def __init__(self, attention: NoAttention):
        self.attention = attention
        self.image_shape = attention.image_shape
        self.read_features = attention.read_features
        self.head_features = math.prod(self.image_shape)  # rows of the fused projection that feed the attention
        self.step_invariant_features = self.read_features // 2

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention.write_linear.weight, self.attention.write_linear.bias

    def read_filters(self, heads: torch.Tensor) -> None:
        return None

    def read(self, x: torch.Tensor, x_err: torch.Tensor, filters: None) -> torch.Tensor:
        return x_err.flatten(1)  # x's own part is step-invariant: the caller adds its product

    def write(self, heads: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return heads.view(-1, *self.image_shape), None, None


class ReadFilters(NamedTuple):
    fx: torch.Tensor  # [B, N, W]
    fy: torch.Tensor  # [B, N, H]
    params: AttentionParams


class GridConstants(NamedTuple):
    """What :class:`FusedGaussianAttention` computes once per device and dtype rather than every step."""

    half_size: torch.Tensor  # [2]: (W + 1)/2 and (H + 1)/2, eqs. (22), (23)
    delta_scale: torch.Tensor  # [2]: (max(H, W) − 1)/(N − 1) of the read and the write grid, eq. (24)
    grid_of_row: torch.Tensor  # [n_w + n_r]: 1 (write) for the write grid's rows, then 0 (read)
    offsets: torch.Tensor  # [n_w + n_r, 1]: i − N/2 − 0.5 of each row within its grid, eqs. (19), (20)
    pixels: torch.Tensor  # [2, 1, L]: a = 1..W and a = 1..H (L = W = H), or, if W ≠ H, [1, L] for x alone
    pixels_y: torch.Tensor | None  # [1, H] when W ≠ H


class FusedGaussianAttention:
    """:class:`GaussianAttention` with the heads ``[read head (5) | write head (5) | patch (C·w·w)]`` from one
    product; the write of step t also returns step t+1's read filters, from the same heads.

    Written for a GPU, where an eager step costs about the same for each operation whatever its size (launch-bound:
    docs/results.md, "On a GPU"): both grids' window parameters come from one set of operations, both grids' and
    (for square images) both axes' filter rows from one Gaussian evaluation, and the constants are made once. Each
    filter row is :func:`draw_exp.model.attention.filterbank`'s, by the same arithmetic."""

    step_invariant_features = 0

    def __init__(self, attention: GaussianAttention):
        self.attention = attention
        self.image_shape = attention.image_shape
        self.read_features = attention.read_features
        self.head_features = 5 + 5 + self.image_shape[0] * attention.write_size**2
        self.cache: dict[tuple[torch.device, torch.dtype], GridConstants] = {}

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.attention
        return (
            torch.cat([a.read_head.weight, a.write_head.weight, a.write_patch.weight]),
            torch.cat([a.read_head.bias, a.write_head.bias, a.write_patch.bias]),
        )

    def constants(self, like: torch.Tensor) -> GridConstants:
        key = (like.device, like.dtype)
        if key not in self.cache:
            _, height, width = self.image_shape
            n_w, n_r = self.attention.write_size, self.attention.read_size

            def arange(n: int) -> torch.Tensor:
                return torch.arange(1, n + 1, dtype=like.dtype, device=like.device)

            def tensor(values: list[float]) -> torch.Tensor:
                return torch.tensor(values, dtype=like.dtype, device=like.device)

            pixels = torch.stack([arange(width), arange(height)])[:, None] if width == height else arange(width)[None]
            self.cache[key] = GridConstants(
                half_size=tensor([(width + 1) / 2, (height + 1) / 2]),
                delta_scale=tensor([(max(height, width) - 1) / max(n - 1, 1) for n in (n_r, n_w)]),
                grid_of_row=torch.tensor([1] * n_w + [0] * n_r, device=like.device),
                offsets=torch.cat([arange(n_w) - n_w / 2 - 0.5, arange(n_r) - n_r / 2 - 0.5])[:, None],
                pixels=pixels,
                pixels_y=None if width == height else arange(height)[None],
            )
        return self.cache[key]

    def read_filters(self, heads: torch.Tensor) -> ReadFilters:
        params = self.attention.attention_params(heads[:, :5], self.attention.read_size)
        return ReadFilters(*self.attention.filterbanks(params, self.attention.read_size), params)

    def read(self, x: torch.Tensor, x_err: torch.Tensor, filters: ReadFilters) -> torch.Tensor:
        # x and x̂ go through the same filters: one batched product over 2C channels.
        patches = glimpse(torch.cat([x, x_err], dim=1), filters.fx, filters.fy)  # [B, 2C, N, N]
        return filters.params.gamma[:, None] * patches.flatten(1)

    def write(self, heads: torch.Tensor) -> tuple[torch.Tensor, ReadFilters, AttentionParams]:
        """This step's canvas update, the next step's read filters, and this step's write parameters."""
        k = self.constants(heads)
        n_w, n_r = self.attention.write_size, self.attention.read_size
        windows, patch = heads.split([10, heads.shape[1] - 10], dim=1)
        centre_tilde, logs = windows.unflatten(1, (2, 5)).split([2, 3], dim=2)  # grids (read, write); (21)
        centre = k.half_size * (centre_tilde + 1)  # (22), (23): [B, 2 grids, 2 axes (x, y)]
        sigma2, delta_tilde, gamma = logs.exp().unbind(2)  # [B, 2 grids] each
        delta = k.delta_scale * delta_tilde  # (24)
        # Each filter row's centre (x, y), stride and variance, the write grid's rows first: [B, n_w + n_r, 4].
        # Splits and unbinds rather than slices and indexing throughout: the gradient of each is one concatenation
        # or stack, where each slice's would be a zero-filled copy, summed with the others.
        rows = torch.cat([centre, delta[..., None], sigma2[..., None]], dim=2).index_select(1, k.grid_of_row)
        row_centre, row_delta, row_sigma2 = rows.split([2, 1, 1], dim=2)
        mu = row_centre + k.offsets * row_delta  # (19), (20): [B, n_w + n_r, 2 axes]
        two_sigma2 = 2 * row_sigma2  # [B, n_w + n_r, 1]
        if k.pixels_y is None:  # square images: both axes at once, (25), (26)
            # [B, 2 axes, n_w + n_r, L]
            f = torch.softmax(-((k.pixels - mu.transpose(1, 2)[..., None]) ** 2) / two_sigma2[:, None], dim=-1)
            (fx_write, fy_write), (fx_read, fy_read) = (grid.unbind(1) for grid in f.split([n_w, n_r], dim=2))
        else:
            mu_x, mu_y = mu.unbind(2)
            fx = torch.softmax(-((k.pixels - mu_x[..., None]) ** 2) / two_sigma2, dim=-1)  # [B, n_w + n_r, W]
            fy = torch.softmax(-((k.pixels_y - mu_y[..., None]) ** 2) / two_sigma2, dim=-1)  # [B, n_w + n_r, H]
            (fx_write, fx_read), (fy_write, fy_read) = fx.split([n_w, n_r], dim=1), fy.split([n_w, n_r], dim=1)
        gamma_read, gamma_write = gamma.unbind(1)
        # Each grid's window in pixels: for the pictures, and γ for the read and the write.
        read = AttentionParams(centre[:, 0, 0], centre[:, 0, 1], delta[:, 0], sigma2[:, 0], gamma_read)
        write = AttentionParams(centre[:, 1, 0], centre[:, 1, 1], delta[:, 1], sigma2[:, 1], gamma_write)
        # 1/γ̂ on the N×N patch, not the H×W image: the same product.
        patch = patch.view(-1, self.image_shape[0], n_w, n_w) / gamma_write[:, None, None, None]
        update = scatter(patch, fx_write, fy_write)
        return update, ReadFilters(fx_read, fy_read, read), write


FusedAttention = FusedNoAttention | FusedGaussianAttention


def fused_attention(attention: Attention) -> FusedAttention:
    return {NoAttention: FusedNoAttention, GaussianAttention: FusedGaussianAttention}[type(attention)](attention)


class FusedWeights(NamedTuple):
    """The per-forward concatenations of the parameters (differentiable views of the same weights). ``P`` head
    outputs, ``L`` the LSTM width, ``R`` the step-dependent part of r_t."""

    out_w: torch.Tensor  # [P + 8L, L]: h^dec → [attention heads | encoder gates from h^dec | decoder hidden gates]
    out_b: torch.Tensor  # [P + 8L], every bias of those gates folded in
    enc_w: torch.Tensor  # [4L, R + L]: [r_t, h^enc_{t−1}] → encoder gates
    enc_const: torch.Tensor | None  # [B, 4L]: the encoder gates from r_t's step-invariant part, or None


def fused_weights(model: DRAW, attention: FusedAttention, x: torch.Tensor) -> FusedWeights:
    enc, dec = model.encoder, model.decoder
    reads, invariant = attention.read_features, attention.step_invariant_features
    head_w, head_b = attention.head_weights()
    return FusedWeights(
        out_w=torch.cat([head_w, enc.weight_ih[:, reads:], dec.weight_hh]),
        out_b=torch.cat([head_b, enc.bias_ih + enc.bias_hh, dec.bias_ih + dec.bias_hh]),
        enc_w=torch.cat([enc.weight_ih[:, invariant:reads], enc.weight_hh], dim=1),
        enc_const=F.linear(x.flatten(1), enc.weight_ih[:, :invariant]) if invariant else None,
    )


def lstm_cell(gates: torch.Tensor, more_gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM with forget gates from its gate pre-activations, given in two parts that add up, in nn.LSTMCell's
    (i, f, g, o) order."""
    if gates.is_cuda and not torch.compiler.is_compiling() and gates.dtype == more_gates.dtype == cell.dtype:
        # nn.LSTMCell's own CUDA kernel, which adds the two parts itself: one launch forward and one backward, where
        # the lines below take about 25 on a GPU that an eager step is launch-bound on. (Compiled, they are fused.)
        h, cell, _ = torch.ops.aten._thnn_fused_lstm_cell(gates, more_gates, cell)
        return h, cell
    i, f, g, o = (gates + more_gates).chunk(4, dim=1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


class LoopState(NamedTuple):
    """:class:`~draw_exp.model.draw.DrawState` and what the fused step carries beside it."""

    canvas: torch.Tensor
    h_enc: torch.Tensor
    c_enc: torch.Tensor
    h_dec: torch.Tensor
    c_dec: torch.Tensor
    enc_gates: torch.Tensor  # [B, 4L]: the encoder's gates from h^dec_{t−1}, biases in (FusedWeights.out_w's rows)
    dec_gates: torch.Tensor  # [B, 4L]: the decoder's hidden gates from h^dec_{t−1}, biases in
    filters: ReadFilters | None  # step t's read filters, from h^dec_{t−1}'s read head


def project(
    model: DRAW, attention: FusedAttention, h_dec: torch.Tensor, weights: FusedWeights
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h^dec onto everything that reads it: the attention heads ``[B, P]``, then the encoder's and the decoder's
    gates from h^dec ``[B, 4L]`` each."""
    hidden = 4 * model.lstm_size
    return F.linear(h_dec, weights.out_w, weights.out_b).split([attention.head_features, hidden, hidden], dim=1)


class StepOutput(NamedTuple):
    state: LoopState
    mu: torch.Tensor  # [B, Z]
    log_sigma: torch.Tensor  # [B, Z]
    write_params: AttentionParams | None


def step(
    model: DRAW, attention: FusedAttention, x: torch.Tensor, state: LoopState, eps: torch.Tensor, weights: FusedWeights
) -> StepOutput:
    """One step of the recurrence; the equation numbers are those of the textbook loop's lines."""
    x_err = x - torch.sigmoid(state.canvas)  # (3)
    r = attention.read(x, x_err, state.filters)  # (4)
    gates = F.linear(torch.cat([r, state.h_enc], dim=1), weights.enc_w)
    if weights.enc_const is not None:
        gates = gates + weights.enc_const
    h_enc, c_enc = lstm_cell(gates, state.enc_gates, state.c_enc)  # (5)
    mu, log_sigma = model.posterior(h_enc).chunk(2, dim=1)  # (1), (2)
    z = mu + torch.exp(log_sigma) * eps  # (6)
    h_dec, c_dec = lstm_cell(F.linear(z, model.decoder.weight_ih), state.dec_gates, state.c_dec)  # (7)
    # One split rather than three slices: its gradient is one concatenation, not three zero-filled copies summed.
    head_out, enc_gates, dec_gates = project(model, attention, h_dec, weights)
    update, filters, write_params = attention.write(head_out)
    return StepOutput(
        LoopState(state.canvas + update, h_enc, c_enc, h_dec, c_dec, enc_gates, dec_gates, filters),  # (8)
        mu,
        log_sigma,
        write_params,
    )


Step = Callable[[DRAW, FusedAttention, torch.Tensor, LoopState, torch.Tensor, FusedWeights], StepOutput]


def forward(
    model: DRAW,
    x: torch.Tensor,
    noise: torch.Tensor,
    return_steps: bool = False,
    return_log_ratio: bool = False,
    step: Step = step,
) -> DrawOutput:
    """:meth:`DRAW.forward` by the fused loop; ``step`` runs one step (:func:`step`, or a compiled form of it)."""
    attention = model.engine_cache.get("fused_attention")
    if attention is None:  # one object per model: a compiled step guards on it
        attention = model.engine_cache["fused_attention"] = fused_attention(model.attention)
    weights = fused_weights(model, attention, x)
    if isinstance(attention, FusedGaussianAttention):
        # Made here, outside the step: a compiled step then reads them as constants, and no CUDA-graph replay owns them.
        attention.constants(x)
    initial = model.initial_state(x.shape[0])
    head_out, enc_gates, dec_gates = project(model, attention, initial.h_dec, weights)
    state = LoopState(*initial, enc_gates, dec_gates, attention.read_filters(head_out))
    # Compiled with CUDA graphs (fused_loop_cudagraphs), each call of the step without gradients starts a new graph
    # generation whose replay overwrites the previous call's outputs; with gradients, the pending backward keeps all
    # T calls in one generation. So what is kept across steps is copied when no gradient is recorded (evaluation,
    # pictures): a few [B, Z] copies a step.
    keep = torch.clone if not torch.is_grad_enabled() else (lambda t: t)
    mus, log_sigmas, canvases, reads, writes = [], [], [], [], []
    for t in range(model.T):
        if return_steps:
            reads.append(AttentionParams(*map(keep, state.filters.params)) if state.filters is not None else None)
        state, mu, log_sigma, write_params = step(model, attention, x, state, noise[t], weights)
        mus.append(keep(mu))
        log_sigmas.append(keep(log_sigma))
        if return_steps:
            canvases.append(keep(state.canvas))
            writes.append(AttentionParams(*map(keep, write_params)) if write_params is not None else None)
    mu, log_sigma = torch.stack(mus), torch.stack(log_sigmas)  # [T, B, Z]
    out = DrawOutput(canvas_logits=keep(state.canvas), kl=gaussian_kl(mu, log_sigma).t())
    if return_log_ratio:
        out.log_ratio = log_ratio(mu + torch.exp(log_sigma) * noise, noise, log_sigma).t()
    if return_steps:
        out.canvases = torch.stack(canvases)
        if writes[0] is not None:
            out.read_params, out.write_params = AttentionParams.stack(reads), AttentionParams.stack(writes)
    return out


def forward_cudagraphs(
    model: DRAW, x: torch.Tensor, noise: torch.Tensor, return_steps: bool = False, return_log_ratio: bool = False
) -> DrawOutput:
    """The fused loop with its step compiled in CUDA-graph mode (eager when ``model.engine_compiled`` is off).
    Compiling one step rather than the unrolled T steps keeps the compile time independent of T."""
    compiled = model.engine_cache.get("cudagraph_step")
    if compiled is None:
        compiled = torch.compile(step, mode="reduce-overhead", dynamic=False) if model.engine_compiled else step
        model.engine_cache["cudagraph_step"] = compiled
    return forward(model, x, noise, return_steps, return_log_ratio, step=compiled)
