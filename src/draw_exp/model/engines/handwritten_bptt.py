"""The hand-written backward through time (``model.engine=handwritten_bptt``, the CPU default).

Autograd records some forty nodes per step of DRAW and runs each one by one in the backward pass; on a CPU that
bookkeeping, the per-step gradient accumulations and the small filterbank products cost as much as half of the
matrix products. Here the whole recurrence is one autograd node (:class:`Recurrence`): the forward loop runs
without a graph and keeps what the backward needs, and the backward loop runs the chain rule step by step in
reverse. Its matrix products are explicit (weight gradients accumulate inside the product, ``addmm_``); a forward
step is one function with its products, and the backward step's element-wise parts are four kernels
(:class:`RecurrenceKernels`), all compiled by torch.compile unless ``model.engine_compiled`` is off.

Tensors are batch-last inside (``[features, B]``, images ``[C, H, W, B]``): with the batch innermost and contiguous,
every filterbank and glimpse sum runs over whole vectors of independent images, which compiled CPU code does at
full width. The attention types' batch-last forms live here; their backward is ``torch.func.vjp`` of their forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from draw_exp.model.attention import Attention, AttentionParams, GaussianAttention, NoAttention, grid_centres
from draw_exp.model.draw import DRAW, DrawOutput
from draw_exp.model.engines import fused_loop
from draw_exp.model.latent import gaussian_kl, log_ratio


def filterbank_batch_last(centre: Tensor, delta: Tensor, sigma2: Tensor, grid_size: int, length: int) -> Tensor:
    """:func:`draw_exp.model.attention.filterbank` with the batch last: ``[N, length, B]``, the same numbers as
    ``filterbank(...)[b]``.

    Normalised as a softmax is, by exp(e − max e) / Σ exp(e − max e), with the maximum in closed form (the
    pixel nearest the filter's centre) in place of a max-reduction: one pass fewer over the filters.
    """
    mu = grid_centres(centre, delta, grid_size).t()  # [N, B]
    a = torch.arange(1, length + 1, dtype=centre.dtype, device=centre.device)[:, None, None]
    scale = -0.5 / sigma2
    # The shift cancels in the ratio, so it carries no gradient.
    peak = (scale * (mu.round().clamp(1, length) - mu) ** 2).detach()  # [N, B]
    weights = torch.exp(scale * (a - mu) ** 2 - peak)  # [length, N, B]
    return (weights / weights.sum(0)).transpose(0, 1)


class BatchLastNoAttention(fused_loop.FusedNoAttention):
    """:class:`NoAttention` batch-last: heads ``[P, B]`` are the fused projection's rows."""

    def read(self, x: torch.Tensor, canvas: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        return (x - torch.sigmoid(canvas)).flatten(0, 2)  # x's own part is step-invariant: the caller adds it

    def write(self, heads: torch.Tensor) -> torch.Tensor:
        return heads.view(*self.image_shape, -1)


class BatchLastGaussianAttention(fused_loop.FusedGaussianAttention):
    """:class:`GaussianAttention` batch-last, from the fused heads ``[read head (5) | write head (5) | patch]``."""

    def filterbanks(self, heads: torch.Tensor, grid_size: int) -> tuple[torch.Tensor, torch.Tensor, AttentionParams]:
        _, height, width = self.image_shape
        params = self.attention.attention_params(heads, grid_size, dim=0)
        fx = filterbank_batch_last(params.gx, params.delta, params.sigma2, grid_size, width)  # [N, W, B]
        fy = filterbank_batch_last(params.gy, params.delta, params.sigma2, grid_size, height)  # [N, H, B]
        return fx, fy, params

    def read(self, x: torch.Tensor, canvas: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """r_t ``[2·C·N·N, B]`` (in :meth:`GaussianAttention.read`'s order) from x and c_{t−1} ``[C, H, W, B]``."""
        fx, fy, params = self.filterbanks(heads[:5], self.attention.read_size)
        images = torch.stack([x, x - torch.sigmoid(canvas)])  # [2, C, H, W, B]
        rows = (fy[:, :, None] * images[:, :, None]).sum(3)  # Σ_h F_Y[p, h] image[h, w]: [2, C, N, W, B]
        patches = (rows[:, :, :, None] * fx).sum(4)  # Σ_w rows[p, w] F_X[q, w]: [2, C, N, N, B]
        return params.gamma * patches.flatten(0, 3)

    def write(self, heads: torch.Tensor) -> torch.Tensor:
        """write(h^dec_t) ``[C, H, W, B]`` from the heads."""
        n = self.attention.write_size
        fx, fy, params = self.filterbanks(heads[5:10], n)
        # 1/γ̂ on the N×N patch rather than the H×W image: the same product, and γ̂'s gradient then needs no pass
        # over the image.
        patch = heads[10:].view(self.image_shape[0], n, n, -1) / params.gamma
        cols = (patch[:, :, :, None] * fx).sum(2)  # Σ_q patch[p, q] F_X[q, w]: [C, N, W, B]
        return (fy[:, :, None] * cols[:, :, None]).sum(1)  # Σ_p F_Y[p, h] cols[p, w]


BatchLastAttention = BatchLastNoAttention | BatchLastGaussianAttention


def batch_last_attention(attention: Attention) -> BatchLastAttention:
    return {NoAttention: BatchLastNoAttention, GaussianAttention: BatchLastGaussianAttention}[type(attention)](
        attention
    )


def lstm_forward(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LSTM cell from summed gate pre-activations ``[4L, B]`` (nn.LSTMCell's i, f, g, o order) and the previous
    cell ``[L, B]``: returns ``h``, the new cell and the activated gates ``[4L, B]`` that the backward needs."""
    i, f, g, o = gates.chunk(4)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    new_cell = f * cell + i * g
    return o * torch.tanh(new_cell), new_cell, torch.cat([i, f, g, o])


def lstm_backward(
    acts: torch.Tensor, cell: torch.Tensor, new_cell: torch.Tensor, d_h: torch.Tensor, d_new_cell: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`lstm_forward`: to the gate pre-activations ``[4L, B]`` and to the previous cell."""
    i, f, g, o = acts.chunk(4)
    tanh_cell = torch.tanh(new_cell)
    d_cell = d_new_cell + d_h * o * (1 - tanh_cell * tanh_cell)
    d_gates = torch.cat(
        [d_cell * g * i * (1 - i), d_cell * cell * f * (1 - f), d_cell * i * (1 - g * g), d_h * tanh_cell * o * (1 - o)]
    )
    return d_gates, d_cell * f


def sample_latent(post: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z = μ + σ·ε from the posterior's outputs ``[2Z, B]`` (μ, log σ), and KL(N(μ, σ²) ‖ N(0, 1)) ``[B]``
    (computed here, inside the step's kernel, it costs no pass of its own over the T·Z·B values)."""
    mu, log_sigma = post.chunk(2)
    return mu + torch.exp(log_sigma) * eps, gaussian_kl(mu, log_sigma, dim=0)


def sample_latent_backward(
    post: Tensor, eps: Tensor, d_z: Tensor, d_mu: Tensor, d_log_sigma: Tensor, d_kl: Tensor
) -> Tensor:
    """Gradient to the posterior's outputs: from z, from the KL (``d_kl`` ``[B]``), and from μ and log σ
    themselves (when the caller used them, e.g. for a log-ratio)."""
    mu, log_sigma = post.chunk(2)
    sigma = torch.exp(log_sigma)
    return torch.cat([d_mu + d_z + d_kl * mu, d_log_sigma + d_z * sigma * eps + d_kl * (sigma.square() - 1)])


class Weights(NamedTuple):
    """The recurrence's weights, batch-last: ``P`` head outputs, ``L`` the LSTM width, ``R`` the step-dependent
    part of r_t, ``Z`` the latent size."""

    enc_const: torch.Tensor | None  # [4L, B]: the encoder gates from r_t's step-invariant part, or None
    out_w: torch.Tensor  # [P + 8L, L]: h^dec → [attention heads | encoder gates | decoder gates]
    out_b: torch.Tensor  # [P + 8L, 1]
    enc_w: torch.Tensor  # [4L, R + L]: [r_t, h^enc_{t−1}] → encoder gates
    post_w: torch.Tensor  # [2Z, L]
    post_b: torch.Tensor  # [2Z, 1]
    dec_w: torch.Tensor  # [4L, Z]


class StepResult(NamedTuple):
    """One forward step's outputs: what the next step takes and what the backward keeps."""

    canvas: torch.Tensor  # c_t [C, H, W, B]
    enc_in: torch.Tensor | None  # [r_{t+1}, h^enc_t] [R + L, B]; None after the last step
    proj: torch.Tensor  # h^dec_t projected by out_w [P + 8L, B] (the heads' rows alone after the last step)
    h_enc: torch.Tensor
    c_enc: torch.Tensor
    enc_acts: torch.Tensor  # the encoder's activated gates [4L, B]
    post: torch.Tensor  # (μ_t, log σ_t) [2Z, B]
    z: torch.Tensor
    kl: torch.Tensor  # [B]
    h_dec: torch.Tensor
    c_dec: torch.Tensor
    dec_acts: torch.Tensor


@dataclass
class SavedSteps:
    """What the backward needs of every step, in step order (index t holds the value entering step t+1 for the
    inputs — ``canvas``, ``proj``, ``enc_in`` — and the step's own outputs otherwise; ``h_dec``, ``c_enc`` and
    ``c_dec`` start with the initial state, and ``proj`` ends with proj_T)."""

    canvas: list = field(default_factory=list)
    proj: list = field(default_factory=list)
    enc_in: list = field(default_factory=list)
    c_enc: list = field(default_factory=list)
    enc_acts: list = field(default_factory=list)
    h_enc: list = field(default_factory=list)
    post: list = field(default_factory=list)
    z: list = field(default_factory=list)
    c_dec: list = field(default_factory=list)
    dec_acts: list = field(default_factory=list)
    h_dec: list = field(default_factory=list)

    def keep(self, result: StepResult) -> None:
        for name in ("h_enc", "c_enc", "enc_acts", "post", "z", "h_dec", "c_dec", "dec_acts"):
            getattr(self, name).append(getattr(result, name))


# Inductor's CPU code generation for these kernels (ignored by its GPU back end). Measured on the paper's MNIST
# model (RESULTS.md): the attention kernels take about 40% less time when GCC may reassociate and use reciprocals
# (NaN and infinity semantics are kept: Inductor adds -fno-finite-math-only), and the LSTM kernels about 40% less
# with tanh(a) as 2 / (1 + exp(−2a)) − 1 (absolute error about 1e-7). Gradients stay within 1e-5 of the textbook
# loop (tests/model/engines/).
COMPILE_OPTIONS = {"cpp.enable_unsafe_math_opt_flag": True, "cpp.use_decompose_tanh": True}


class RecurrenceKernels:
    """One step forward (:meth:`step`), and the element-wise pieces of one step backward, eager or compiled.

    The write of step t and the read of step t+1 take the same heads with no matrix product between them, so each
    runs as one kernel, forward and backward.
    """

    def __init__(self, attention: BatchLastAttention, compiled: bool = False):
        self.attention = attention
        kernels = {
            "step": self._step,
            "lstm_backward": lstm_backward,
            "sample_latent_backward": sample_latent_backward,
            "read": self._read,
            "write_backward": self._write_backward,
            "read_backward": self._read_backward,
            "read_write_backward": self._read_write_backward,
        }
        for name, fn in kernels.items():
            setattr(self, name, torch.compile(fn, dynamic=False, options=COMPILE_OPTIONS) if compiled else fn)

    def _step(
        self,
        x: Tensor,
        canvas: Tensor,
        enc_in: Tensor,
        proj: Tensor,
        c_enc: Tensor,
        c_dec: Tensor,
        eps: Tensor,
        w: Weights,
        last: bool,
    ) -> StepResult:
        """One step forward, its matrix products included (one compiled call a step costs less than a call per
        element-wise piece): from c_{t−1}, the encoder input [r_t, h^enc_{t−1}] and proj_{t−1} (h^dec_{t−1}'s
        projection), to c_t, the next encoder input and proj_t, and what the backward keeps. At the ``last`` step
        h^dec_T feeds only the write, so only the heads' rows are projected and nothing is read."""
        heads, lstm = proj.shape[0] - 8 * c_enc.shape[0], c_enc.shape[0]
        gates = torch.addmm(proj[heads : heads + 4 * lstm], w.enc_w, enc_in)
        if w.enc_const is not None:
            gates = gates + w.enc_const
        h_enc, new_c_enc, enc_acts = lstm_forward(gates, c_enc)  # (5)
        post = torch.addmm(w.post_b, w.post_w, h_enc)  # (1), (2)
        z, kl = sample_latent(post, eps)  # (6)
        h_dec, new_c_dec, dec_acts = lstm_forward(torch.addmm(proj[heads + 4 * lstm :], w.dec_w, z), c_dec)  # (7)
        if last:
            new_proj = torch.addmm(w.out_b[:heads], w.out_w[:heads], h_dec)
            canvas, next_enc_in = self._write(canvas, new_proj), None
        else:
            new_proj = torch.addmm(w.out_b, w.out_w, h_dec)
            canvas, next_enc_in = self._write_read(x, canvas, new_proj[:heads], h_enc)
        return StepResult(
            canvas, next_enc_in, new_proj, h_enc, new_c_enc, enc_acts, post, z, kl, h_dec, new_c_dec, dec_acts
        )

    def _read(self, x: Tensor, canvas: Tensor, heads: Tensor, h_enc: Tensor) -> Tensor:
        """The encoder's input [r_t, h^enc_{t−1}] ``[R + L, B]``, r_t read from c_{t−1} with heads_{t−1}: (3), (4)."""
        return torch.cat([self.attention.read(x, canvas, heads), h_enc])

    def _write(self, canvas: Tensor, heads: Tensor) -> Tensor:
        return canvas + self.attention.write(heads)  # (8)

    def _write_read(self, x: Tensor, canvas: Tensor, heads: Tensor, h_enc: Tensor) -> tuple[Tensor, Tensor]:
        """c_t = c_{t−1} + write(heads_t), then the next encoder input read from c_t with the same heads."""
        canvas = self._write(canvas, heads)
        return canvas, self._read(x, canvas, heads, h_enc)

    def _write_backward(self, heads: Tensor, d_canvas: Tensor) -> Tensor:
        """Through c_t = c_{t−1} + write(heads_t): the gradient to the heads (c_{t−1}'s is ``d_canvas`` itself)."""
        return torch.func.vjp(self.attention.write, heads)[1](d_canvas)[0]

    def _through_read(
        self, x: Tensor, canvas: Tensor, heads: Tensor, d_read: Tensor, d_canvas: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Through r_t = read(x, c_{t−1}, heads_{t−1}): the gradients to c_{t−1} (plus ``d_canvas``, what came from
        later steps) and to the heads."""
        _, vjp = torch.func.vjp(lambda c, h: self.attention.read(x, c, h), canvas, heads)
        d_canvas_read, d_heads = vjp(d_read)
        return d_canvas + d_canvas_read, d_heads

    def _read_backward(
        self,
        x: Tensor,
        canvas: Tensor,
        heads: Tensor,
        d_read: Tensor,
        d_canvas: Tensor,
        d_enc_gates: Tensor,
        d_dec_gates: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Step 1's read: the gradients to c_0 and to all of proj_0 (its encoder and decoder rows' are given)."""
        d_canvas, d_heads = self._through_read(x, canvas, heads, d_read, d_canvas)
        return d_canvas, torch.cat([d_heads, d_enc_gates, d_dec_gates])

    def _read_write_backward(
        self,
        x: Tensor,
        canvas: Tensor,
        heads: Tensor,
        d_read: Tensor,
        d_canvas: Tensor,
        d_enc_gates: Tensor,
        d_dec_gates: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """As :meth:`_read_backward` for step t > 1, then through c_{t−1} = c_{t−2} + write(heads_{t−1}), which
        read the same heads: the gradients to c_{t−2} (the same as to c_{t−1}) and to proj_{t−1}."""
        d_canvas, d_heads = self._through_read(x, canvas, heads, d_read, d_canvas)
        d_heads = d_heads + self._write_backward(heads, d_canvas)
        return d_canvas, torch.cat([d_heads, d_enc_gates, d_dec_gates])


class Recurrence(torch.autograd.Function):
    """The T steps as one autograd node. Inputs, batch-last (batch B, LSTM width L, latent Z):

    x ``[C, H, W, B]``; noise ``[T, Z, B]``; the initial state, c_0 ``[C, H, W, B]`` and h^enc_0, c^enc_0, h^dec_0,
    c^dec_0 ``[L, B]``; then the fields of :class:`Weights` in order (autograd passes gradients to tensors given
    one by one, not inside a tuple).

    Returns the final canvas (logits, ``[C, H, W, B]``), every step's KL to the prior ``[T, B]`` and posterior
    μ and log σ ``[T, Z, B]``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        kernels: RecurrenceKernels,
        x: Tensor,
        noise: Tensor,
        canvas0: Tensor,
        h_enc0: Tensor,
        c_enc0: Tensor,
        h_dec0: Tensor,
        c_dec0: Tensor,
        *weights: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        w = Weights(*weights)
        steps, lstm = noise.shape[0], h_enc0.shape[0]
        heads = w.out_w.shape[0] - 8 * lstm
        # Inside autograd.Function.forward no graph is recorded; detached inputs also keep the compiled kernels
        # from specialising on requires_grad at the first step.
        canvas, h_enc, c_enc, c_dec, h_dec0 = (t.detach() for t in (canvas0, h_enc0, c_enc0, c_dec0, h_dec0))
        proj = torch.addmm(w.out_b, w.out_w, h_dec0)
        saved = SavedSteps(h_dec=[h_dec0], c_enc=[c_enc], c_dec=[c_dec])
        kls = []
        enc_in = kernels.read(x, canvas, proj[:heads], h_enc)
        for t in range(steps):
            saved.canvas.append(canvas)
            saved.proj.append(proj)
            saved.enc_in.append(enc_in)
            result = kernels.step(x, canvas, enc_in, proj, c_enc, c_dec, noise[t], w, last=t == steps - 1)
            saved.keep(result)
            kls.append(result.kl)
            canvas, enc_in, proj, c_enc, c_dec = result.canvas, result.enc_in, result.proj, result.c_enc, result.c_dec
        saved.proj.append(proj)  # proj_T: the heads' rows alone
        ctx.kernels, ctx.saved, ctx.has_enc_const = kernels, saved, w.enc_const is not None
        ctx.save_for_backward(x, noise, *w[1:])
        mu, log_sigma = torch.stack(saved.post).chunk(2, dim=1)  # [T, Z, B] each
        return canvas, torch.stack(kls), mu, log_sigma

    @staticmethod
    def backward(
        ctx: Any, d_canvas: Tensor | None, d_kl: Tensor | None, d_mu: Tensor | None, d_log_sigma: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        x, noise, *weights = ctx.saved_tensors
        out_w, out_b, enc_w, post_w, post_b, dec_w = weights
        kernels, s = ctx.kernels, ctx.saved
        ctx.saved = None
        steps, batch, lstm = noise.shape[0], x.shape[-1], out_w.shape[1]
        heads, reads = out_w.shape[0] - 8 * lstm, enc_w.shape[1] - lstm
        d_mu = torch.zeros_like(noise) if d_mu is None else d_mu
        d_log_sigma = torch.zeros_like(noise) if d_log_sigma is None else d_log_sigma
        d_kl = x.new_zeros(steps, batch) if d_kl is None else d_kl
        d_canvas = torch.zeros_like(x) if d_canvas is None else d_canvas.contiguous()
        d_out_w, d_out_b, d_enc_w = torch.zeros_like(out_w), torch.zeros_like(out_b), torch.zeros_like(enc_w)
        d_post_w, d_post_b, d_dec_w = torch.zeros_like(post_w), torch.zeros_like(post_b), torch.zeros_like(dec_w)
        d_h_enc = d_c_enc = d_c_dec = x.new_zeros(lstm, batch)
        d_enc_const = x.new_zeros(4 * lstm, batch) if ctx.has_enc_const else None
        d_proj = kernels.write_backward(s.proj[-1], d_canvas)  # proj_T: the heads' rows alone
        for t in reversed(range(steps)):
            # Step t+1 in the paper's numbering, in reverse. proj_{t+1} = out(h^dec_{t+1}), its first ``rows``:
            rows = d_proj.shape[0]
            d_out_w[:rows].addmm_(d_proj, s.h_dec[t + 1].t())
            d_out_b[:rows] += d_proj.sum(1, keepdim=True)
            # d_projᵀ·out_w, transposed back: MKL runs this product ~10% faster than out_wᵀ·d_proj at these shapes;
            # made contiguous like the encoder's d_h, so that one compiled lstm_backward serves both.
            d_h_dec = (d_proj.t() @ out_w[:rows]).t().contiguous()
            d_gates, d_c_dec = kernels.lstm_backward(s.dec_acts[t], s.c_dec[t], s.c_dec[t + 1], d_h_dec, d_c_dec)
            d_dec_w.addmm_(d_gates, s.z[t].t())
            d_post = kernels.sample_latent_backward(
                s.post[t], noise[t], dec_w.t() @ d_gates, d_mu[t], d_log_sigma[t], d_kl[t]
            )
            d_post_w.addmm_(d_post, s.h_enc[t].t())
            d_post_b += d_post.sum(1, keepdim=True)
            d_enc_gates, d_c_enc = kernels.lstm_backward(
                s.enc_acts[t], s.c_enc[t], s.c_enc[t + 1], torch.addmm(d_h_enc, post_w.t(), d_post), d_c_enc
            )
            d_enc_w.addmm_(d_enc_gates, s.enc_in[t].t())
            if d_enc_const is not None:
                d_enc_const += d_enc_gates
            d_enc_in = enc_w.t() @ d_enc_gates
            d_h_enc = d_enc_in[reads:]
            # r_t read c_{t−1} and proj_{t−1}'s read head; for t > 0 c_{t−1} was written from proj_{t−1} too.
            backward = kernels.read_write_backward if t > 0 else kernels.read_backward
            d_canvas, d_proj = backward(
                x, s.canvas[t], s.proj[t][:heads], d_enc_in[:reads], d_canvas, d_enc_gates, d_gates
            )
        d_out_w.addmm_(d_proj, s.h_dec[0].t())
        d_out_b += d_proj.sum(1, keepdim=True)
        return (
            None,
            None,
            None,
            d_canvas,
            d_h_enc,
            d_c_enc,
            out_w.t() @ d_proj,
            d_c_dec,
            d_enc_const,
            d_out_w,
            d_out_b,
            d_enc_w,
            d_post_w,
            d_post_b,
            d_dec_w,
        )


def forward(
    model: DRAW, x: torch.Tensor, noise: torch.Tensor, return_steps: bool = False, return_log_ratio: bool = False
) -> DrawOutput:
    """:meth:`DRAW.forward` by the hand-written backward. Pictures (``return_steps``) and autocast take the fused
    loop: the recurrence keeps no per-step attention, and under autocast autograd casts each product's operands."""
    if return_steps or torch.is_autocast_enabled(x.device.type):
        return fused_loop.forward(model, x, noise, return_steps, return_log_ratio)
    kernels = model.engine_cache.get("kernels")
    if kernels is None:
        kernels = model.engine_cache["kernels"] = RecurrenceKernels(
            batch_last_attention(model.attention), compiled=model.engine_compiled
        )
    fused = fused_loop.fused_weights(model, kernels.attention, x)
    weights = Weights(
        None if fused.enc_const is None else fused.enc_const.t().contiguous(),
        fused.out_w,
        fused.out_b[:, None],
        fused.enc_w,
        model.posterior.weight,
        model.posterior.bias[:, None],
        model.decoder.weight_ih,
    )
    batch = x.shape[0]

    def batch_last(param: Tensor) -> Tensor:  # a learned initial state, one copy per image: [..., B]
        return param[..., None].expand(*param.shape, batch).contiguous()

    initial = (model.canvas0, model.h_enc0, model.c_enc0, model.h_dec0, model.c_dec0)
    noise_t = noise.transpose(1, 2).contiguous()  # [T, Z, B]
    canvas, kl, mu, log_sigma = Recurrence.apply(
        kernels, x.permute(1, 2, 3, 0).contiguous(), noise_t, *map(batch_last, initial), *weights
    )
    out = DrawOutput(canvas_logits=canvas.permute(3, 0, 1, 2), kl=kl.t())
    if return_log_ratio:  # summed over Z, the contiguous dimension of [T, Z, B]
        out.log_ratio = log_ratio(mu + torch.exp(log_sigma) * noise_t, noise_t, log_sigma, dim=1).t()
    return out
