"""The DRAW network (Gregor et al., 2015, section 2), read top-down: parameters, the T steps of the paper's
recurrence, and generation. Equation numbers are the paper's.

:meth:`DRAW.forward` is the specification: every engine in ``draw_exp.model.engines`` computes this same function
faster (tested for the loss and every gradient, tests/model/engines/), and ``model.engine=textbook`` trains with
this loop itself, the place to try an idea. Knows nothing of Lightning or Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from draw_exp.errors import ConfigError, check_choice, check_int_range
from draw_exp.model.attention import AttentionParams, build_attention
from draw_exp.model.engines import ENGINES, auto_engine, run, supports
from draw_exp.model.latent import gaussian_kl, log_ratio


class DrawState(NamedTuple):
    """What one step hands to the next."""

    canvas: torch.Tensor  # c_t, logits: [B, C, H, W]
    h_enc: torch.Tensor  # [B, L], and so each state below
    c_enc: torch.Tensor  # the encoder LSTM's cell
    h_dec: torch.Tensor
    c_dec: torch.Tensor  # the decoder LSTM's cell


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

    ``image_shape`` is ``(C, H, W)``; ``attention_type`` one of ``none`` and ``gaussian`` (read and write grids of
    ``read_size`` and ``write_size``). The initial canvas and LSTM states are learned, as in the paper. ``engine``
    says how :meth:`forward` runs (:data:`draw_exp.model.engines.ENGINES`).
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        T: int,
        latent_size: int,
        lstm_size: int,
        attention_type: str = "gaussian",
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
        self.attention = build_attention(self.image_shape, lstm_size, attention_type, read_size, write_size)

        self.encoder = nn.LSTMCell(self.attention.read_features + lstm_size, lstm_size)  # RNN^enc
        self.posterior = nn.Linear(lstm_size, 2 * latent_size)  # h^enc_t → (μ_t, log σ_t)
        self.decoder = nn.LSTMCell(latent_size, lstm_size)  # RNN^dec

        self.canvas0 = nn.Parameter(torch.zeros(self.image_shape))
        self.h_enc0 = nn.Parameter(torch.zeros(lstm_size))
        self.c_enc0 = nn.Parameter(torch.zeros(lstm_size))
        self.h_dec0 = nn.Parameter(torch.zeros(lstm_size))
        self.c_dec0 = nn.Parameter(torch.zeros(lstm_size))
        self.set_engine(engine)

    def initial_state(self, batch: int) -> DrawState:
        """The learned c_0, h^enc_0, h^dec_0 and cells, one view per image."""
        return DrawState(
            *(p.expand(batch, *p.shape) for p in (self.canvas0, self.h_enc0, self.c_enc0, self.h_dec0, self.c_dec0))
        )

    def forward(
        self,
        x: torch.Tensor,
        noise: torch.Tensor | None = None,
        return_steps: bool = False,
        return_log_ratio: bool = False,
    ) -> DrawOutput:
        """Run the T steps on ``x`` ``[B, C, H, W]``.

        ``noise`` ``[T, B, latent_size]`` fixes the standard-normal draws of the reparameterisation; by default
        fresh noise is drawn for every step. ``return_log_ratio`` adds log q(z_t | x) − log p(z_t) for importance
        weights; ``return_steps`` every step's canvas and attention (for pictures).
        """
        if noise is None:
            noise = torch.randn(self.T, x.shape[0], self.latent_size, device=x.device, dtype=x.dtype)
        engine = self.engine_for(x.device)
        if engine != "textbook":
            return run(engine, self, x, noise, return_steps, return_log_ratio)

        state = self.initial_state(x.shape[0])
        kls, log_ratios, canvases, reads, writes = [], [], [], [], []
        for t in range(self.T):
            x_err = x - torch.sigmoid(state.canvas)  # (3)
            r, read_params = self.attention.read(x, x_err, state.h_dec)  # (4)
            h_enc, c_enc = self.encoder(torch.cat([r, state.h_dec], dim=1), (state.h_enc, state.c_enc))  # (5)
            mu, log_sigma = self.posterior(h_enc).chunk(2, dim=1)  # (1), (2)
            z = mu + torch.exp(log_sigma) * noise[t]  # (6): z_t ~ Q(Z_t | h^enc_t), reparameterised
            h_dec, c_dec = self.decoder(z, (state.h_dec, state.c_dec))  # (7)
            update, write_params = self.attention.write(h_dec)
            state = DrawState(state.canvas + update, h_enc, c_enc, h_dec, c_dec)  # (8)
            kls.append(gaussian_kl(mu, log_sigma))  # the summand of (10), in closed form (11)
            if return_log_ratio:
                log_ratios.append(log_ratio(z, noise[t], log_sigma))
            if return_steps:
                canvases.append(state.canvas)
                reads.append(read_params)
                writes.append(write_params)
        out = DrawOutput(canvas_logits=state.canvas, kl=torch.stack(kls, dim=1))
        if return_log_ratio:
            out.log_ratio = torch.stack(log_ratios, dim=1)
        if return_steps:
            out.canvases = torch.stack(canvases)
            if writes[0] is not None:
                out.read_params, out.write_params = AttentionParams.stack(reads), AttentionParams.stack(writes)
        return out

    @torch.no_grad()
    def sample(self, n: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Generate ``n`` images from the prior, z_t ~ N(0, I); returns every step's canvas as probabilities,
        ``[T, n, C, H, W]`` in [0, 1]. ``noise`` ``[T, n, latent_size]`` fixes the draws."""
        return self.sample_steps(n, noise)[0]

    @torch.no_grad()
    def sample_steps(self, n: int, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, AttentionParams | None]:
        """As :meth:`sample`, and the write attention of every step (fields ``[T, n]``; None without attention)."""
        state = self.initial_state(n)
        canvas, dec_state = state.canvas, (state.h_dec, state.c_dec)
        canvases, writes = [], []
        for t in range(self.T):
            z = torch.randn(n, self.latent_size, device=canvas.device) if noise is None else noise[t]  # (13)
            dec_state = self.decoder(z, dec_state)  # (14)
            update, write_params = self.attention.write(dec_state[0])
            canvas = canvas + update  # (15)
            canvases.append(torch.sigmoid(canvas))  # the mean of D(X | c̃_t), (16)
            writes.append(write_params)
        return torch.stack(canvases), AttentionParams.stack(writes) if writes[0] is not None else None

    def set_engine(self, engine: str, compiled: bool = True) -> None:
        """Choose how :meth:`forward` runs the T steps: a name from :data:`~draw_exp.model.engines.ENGINES`.
        ``compiled=False`` keeps an engine's torch.compile'd pieces eager (for tests and debugging)."""
        check_choice("model.engine", engine, tuple(ENGINES))
        if not supports(engine, self.attention):
            raise ConfigError(
                f"model.engine={engine!r} does not run {type(self.attention).__name__}: "
                f"use model.engine=auto or textbook"
            )
        self.engine = engine
        self.engine_compiled = compiled
        self.engine_cache = {}  # what an engine builds once per model (compiled kernels), dropped on a change

    def engine_for(self, device: torch.device) -> str:
        """The engine that runs on ``device``: ``auto`` resolved by :func:`~draw_exp.model.engines.auto_engine`."""
        return auto_engine(device.type, self.attention) if self.engine == "auto" else self.engine
