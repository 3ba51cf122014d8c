"""The DRAW network (Gregor et al., 2015, section 2), free of any training framework."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from draw_exp.errors import check_choice, check_int_range
from draw_exp.model.attention import AttentionParams, GaussianAttention, NoAttention
from draw_exp.model.latent import gaussian_kl, log_ratio
from draw_exp.model.recurrence import Recurrence, RecurrenceKernels

ATTENTION_TYPES = ("none", "gaussian")
# How DRAW.forward runs the T steps; all compute the textbook loop's function (tests/model/test_fast_path.py).
ENGINES = {
    "auto": "the fastest engine measured for the device the batch is on (see auto_engine)",
    "textbook": "the paper's loop step by step (draw_exp.model.reference): the specification, slowest",
    "fused_loop": "the step loop with fused projections, eager PyTorch under autograd",
    "fused_loop_cudagraphs": "the fused step loop, its body compiled by torch.compile in CUDA-graph mode",
    "handwritten_bptt": "the T steps as one autograd node with a hand-written backward, kernels compiled",
}


def auto_engine(device_type: str) -> str:
    """What ``engine=auto`` runs on ``device_type``. On a CPU the hand-written backward: 1.5–1.8x the textbook loop
    (RESULTS.md). On a GPU the eager fused loop, the engine with no compile step and no CUDA-graph caveats, until
    GPU timings exist to choose by (none has been measured yet)."""
    return "handwritten_bptt" if device_type == "cpu" else "fused_loop"


def build_attention(image_shape, lstm_size: int, type: str, read_size: int | None = None, write_size: int | None = None):
    """Build a read/write pair by name. Key names match the ``attention`` config group."""
    check_choice("attention.type", type, ATTENTION_TYPES)
    if type == "none":
        return NoAttention(image_shape, lstm_size)
    side = min(image_shape[1:])
    why = f"at most the shorter image side, {side} pixels"
    check_int_range("attention.read_size", read_size, 1, side, why)
    check_int_range("attention.write_size", write_size, 1, side, why)
    return GaussianAttention(image_shape, lstm_size, read_size, write_size)


def lstm_cell(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An LSTM with forget gates from its summed gate pre-activations, in nn.LSTMCell's (i, f, g, o) order."""
    i, f, g, o = gates.chunk(4, dim=1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


@dataclass
class DrawOutput:
    canvas_logits: torch.Tensor  # [B, C, H, W], c_T: the likelihood's parameters before the sigmoid
    kl: torch.Tensor  # [B, T], KL of each step's posterior to the prior, summed over latent dimensions
    log_ratio: torch.Tensor | None = None  # [B, T], log q(z_t | x) − log p(z_t) at the drawn z_t, when requested
    canvases: torch.Tensor | None = None  # [T, B, C, H, W] logits c_1..c_T, when steps are requested
    read_params: AttentionParams | None = None  # fields [T, B], Gaussian attention only
    write_params: AttentionParams | None = None


class DRAW(nn.Module):
    """Encoder and decoder LSTMs, a reparameterised Gaussian posterior per step, and an additive canvas.

    ``image_shape`` is ``(C, H, W)``. The initial canvas and LSTM states are learned, as in the paper.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        T: int,
        latent_size: int,
        lstm_size: int,
        attention: str = "gaussian",
        read_size: int | None = 2,
        write_size: int | None = 5,
        engine: str = "auto",
    ):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape={tuple(image_shape)!r}: must be (channels, height, width)")
        for i, side in enumerate(image_shape):
            check_int_range(f"image_shape[{i}]", side, 1)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.T = check_int_range("T", T, 1)
        self.latent_size = check_int_range("latent_size", latent_size, 1)
        self.lstm_size = check_int_range("lstm_size", lstm_size, 1)
        self.attention = build_attention(self.image_shape, lstm_size, attention, read_size, write_size)

        self.encoder = nn.LSTMCell(self.attention.read_features + lstm_size, lstm_size)
        self.posterior = nn.Linear(lstm_size, 2 * latent_size)  # μ and log σ
        self.decoder = nn.LSTMCell(latent_size, lstm_size)

        self.canvas0 = nn.Parameter(torch.zeros(self.image_shape))
        self.h_enc0 = nn.Parameter(torch.zeros(lstm_size))
        self.c_enc0 = nn.Parameter(torch.zeros(lstm_size))
        self.h_dec0 = nn.Parameter(torch.zeros(lstm_size))
        self.c_dec0 = nn.Parameter(torch.zeros(lstm_size))
        self.set_engine(engine)

    def _initial(self, batch: int):
        def expand(p):
            return p.expand(batch, *p.shape)

        return expand(self.canvas0), (expand(self.h_enc0), expand(self.c_enc0)), (expand(self.h_dec0), expand(self.c_dec0))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, return_steps: bool = False,
                return_log_ratio: bool = False) -> DrawOutput:
        """Run the T steps on ``x`` ``[B, C, H, W]``.

        ``noise`` ``[T, B, latent_size]`` fixes the standard-normal draws of the reparameterisation; by default
        fresh noise is drawn for every step. ``return_log_ratio`` adds log q(z_t | x) − log p(z_t) for importance
        weights; ``return_steps`` every step's canvas and attention (for pictures).

        ``self.engine`` (:data:`ENGINES`, set by :meth:`set_engine`) says how the steps run; every engine computes
        the textbook loop's function. Pictures (``return_steps``) and autocast always take the fused step loop.
        """
        if noise is None:
            noise = torch.randn(self.T, x.shape[0], self.latent_size, device=x.device, dtype=x.dtype)
        engine = self.engine_for(x.device)
        if engine == "textbook" and not return_steps:
            from draw_exp.model.reference import reference_forward  # reference.py builds on this module

            return reference_forward(self, x, noise, return_log_ratio)
        # Under autocast the step loop runs: autograd then casts each product's operands.
        if return_steps or engine != "handwritten_bptt" or torch.is_autocast_enabled(x.device.type):
            out, mu, log_sigma = self._step_loop(x, noise, return_steps)
            out.kl = gaussian_kl(mu, log_sigma).t()
            latent_dim = 2  # μ, log σ, noise: [T, B, Z]
        else:
            if self._kernels is None:
                self._kernels = RecurrenceKernels(self.attention, compile=True)
            noise = noise.transpose(1, 2).contiguous()
            canvas, kl, mu, log_sigma = self._recurrence(x, noise)
            out = DrawOutput(canvas_logits=canvas, kl=kl.t())
            latent_dim = 1  # [T, Z, B]: the log-ratio's sum runs over contiguous memory
        if return_log_ratio:
            out.log_ratio = log_ratio(mu + torch.exp(log_sigma) * noise, noise, log_sigma, latent_dim).t()
        return out

    def _recurrence(self, x: torch.Tensor, noise: torch.Tensor):
        """The T steps as one autograd node, batch-last inside; ``noise`` is ``[T, Z, B]``. Returns c_T
        ``[B, C, H, W]``, the KL of each step ``[T, B]``, μ and log σ ``[T, Z, B]``."""
        batch = x.shape[0]
        weights = self._fused_weights(x)
        enc_const = weights.get("enc_const")

        def batch_last(param):  # a learned initial state, one copy per image: [..., B]
            return param[..., None].expand(*param.shape, batch).contiguous()

        canvas, kl, mu, log_sigma = Recurrence.apply(
            self._kernels, x.permute(1, 2, 3, 0).contiguous(), noise,
            batch_last(self.canvas0), batch_last(self.h_enc0), batch_last(self.c_enc0), batch_last(self.h_dec0),
            batch_last(self.c_dec0), None if enc_const is None else enc_const.t().contiguous(),
            weights["out_w"], weights["out_b"][:, None], weights["enc_w"], self.posterior.weight,
            self.posterior.bias[:, None], self.decoder.weight_ih)
        return canvas.permute(3, 0, 1, 2), kl, mu, log_sigma

    def _step_loop(self, x: torch.Tensor, noise: torch.Tensor, return_steps: bool):
        """The recurrence under autograd, one (optionally compiled) :meth:`_step` at a time: h^dec_t is projected
        once per step onto everything that reads it (both attention heads, the write patch, the next encoder
        input and the decoder's next hidden gates) and the encoder takes [r_t, h^enc] in one product."""
        batch, steps = x.shape[0], self.T
        weights = self._fused_weights(x)
        canvas, (h_enc, c_enc), (h_dec, c_dec) = self._initial(batch)
        proj = F.linear(h_dec, weights["out_w"], weights["out_b"])
        filters = self.attention.read_filters(proj[:, : self.attention.head_features])
        # Compiled with CUDA graphs (model.compile=reduce-overhead), each call of _step without gradients starts a
        # new graph generation whose replay overwrites the previous call's outputs; with gradients, the pending
        # backward keeps all T calls in one generation. So what is kept across steps is copied when no gradient
        # is recorded (evaluation, pictures): a few [B, Z] copies a step.
        keep = torch.clone if not torch.is_grad_enabled() else (lambda t: t)
        mus, log_sigmas, canvases, read_steps, write_steps = [], [], [], [], []
        for t in range(steps):
            if return_steps:
                read_steps.append(AttentionParams(*map(keep, filters[2])) if filters is not None else None)
            canvas, h_enc, c_enc, h_dec, c_dec, proj, filters, mu, log_sigma, write_params = self._step(
                x, canvas, h_enc, c_enc, h_dec, c_dec, proj, filters, noise[t], weights)
            mus.append(keep(mu))
            log_sigmas.append(keep(log_sigma))
            if return_steps:
                canvases.append(keep(canvas))
                write_steps.append(AttentionParams(*map(keep, write_params)) if write_params is not None else None)
        out = DrawOutput(canvas_logits=keep(canvas), kl=None)
        if return_steps:
            out.canvases = torch.stack(canvases)
            if write_steps[0] is not None:
                out.read_params = AttentionParams.stack(read_steps)
                out.write_params = AttentionParams.stack(write_steps)
        return out, torch.stack(mus), torch.stack(log_sigmas)  # μ, log σ: [T, B, latent_size]

    def _fused_weights(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The per-forward concatenations of the parameters (differentiable views of the same weights)."""
        enc, dec, attention = self.encoder, self.decoder, self.attention
        reads, invariant = attention.read_features, attention.step_invariant_features
        head_w, head_b = attention.head_weights()
        weights = {
            # h^dec → [attention heads | encoder gates from h^dec | decoder hidden gates], all biases folded in
            "out_w": torch.cat([head_w, enc.weight_ih[:, reads:], dec.weight_hh]),
            "out_b": torch.cat([head_b, enc.bias_ih + enc.bias_hh, dec.bias_ih + dec.bias_hh]),
            # [r_t (its step-dependent part), h^enc_{t−1}] → encoder gates
            "enc_w": torch.cat([enc.weight_ih[:, invariant:reads], enc.weight_hh], dim=1),
        }
        if invariant:
            weights["enc_const"] = F.linear(x.flatten(1), enc.weight_ih[:, :invariant])
        return weights

    def _step(self, x, canvas, h_enc, c_enc, h_dec, c_dec, proj, filters, eps, weights):
        heads, hidden = self.attention.head_features, 4 * self.lstm_size
        x_err = x - torch.sigmoid(canvas)
        r = self.attention.read_fast(x, x_err, filters)
        gates = F.linear(torch.cat([r, h_enc], dim=1), weights["enc_w"]) + proj[:, heads : heads + hidden]
        if "enc_const" in weights:
            gates = gates + weights["enc_const"]
        h_enc, c_enc = lstm_cell(gates, c_enc)
        mu, log_sigma = self.posterior(h_enc).chunk(2, dim=-1)
        z = mu + torch.exp(log_sigma) * eps
        h_dec, c_dec = lstm_cell(F.linear(z, self.decoder.weight_ih) + proj[:, heads + hidden :], c_dec)
        proj = F.linear(h_dec, weights["out_w"], weights["out_b"])
        update, filters, write_params = self.attention.write_fast(proj[:, :heads])
        return canvas + update, h_enc, c_enc, h_dec, c_dec, proj, filters, mu, log_sigma, write_params

    def set_engine(self, engine: str) -> None:
        """Choose how :meth:`forward` runs the T steps: a name from :data:`ENGINES`. Compiled engines compile on
        their first call; compiling one step's pieces rather than the unrolled T steps keeps that time
        independent of T."""
        check_choice("model.engine", engine, tuple(ENGINES))
        self.engine = engine
        self._kernels = None  # RecurrenceKernels, made on the first handwritten_bptt call
        self.__dict__.pop("_step", None)  # back to the eager step
        if engine == "fused_loop_cudagraphs":
            self._step = torch.compile(self._step, mode="reduce-overhead", dynamic=False)

    def engine_for(self, device: torch.device) -> str:
        """The engine that runs on ``device``: ``auto`` resolved by :func:`auto_engine`."""
        return auto_engine(device.type) if self.engine == "auto" else self.engine

    def use_hand_written_backward(self, compile: bool = True) -> None:
        """The ``handwritten_bptt`` engine; ``compile=False`` keeps its kernels eager (slower than the fused loop,
        for tests and debugging)."""
        self.set_engine("handwritten_bptt")
        self._kernels = RecurrenceKernels(self.attention, compile=compile)

    @torch.no_grad()
    def sample(self, n: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Generate ``n`` images from the prior, z_t ~ N(0, I); returns every step's canvas as probabilities,
        ``[T, n, C, H, W]`` in [0, 1]. ``noise`` ``[T, n, latent_size]`` fixes the draws."""
        return self.sample_steps(n, noise)[0]

    @torch.no_grad()
    def sample_steps(self, n: int, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, AttentionParams | None]:
        """As :meth:`sample`, and the write attention of every step (fields ``[T, n]``; None without attention)."""
        canvas, _, dec_state = self._initial(n)
        canvases, write_steps = [], []
        for t in range(self.T):
            z = torch.randn(n, self.latent_size, device=canvas.device) if noise is None else noise[t]
            dec_state = self.decoder(z, dec_state)
            update, write_params = self.attention.write(dec_state[0])
            canvas = canvas + update
            canvases.append(torch.sigmoid(canvas))
            write_steps.append(write_params)
        write = AttentionParams.stack(write_steps) if write_steps[0] is not None else None
        return torch.stack(canvases), write
