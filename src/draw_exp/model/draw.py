"""The DRAW network (Gregor et al., 2015, section 2), free of any training framework."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from draw_exp.errors import check_choice, check_int_range
from draw_exp.model.attention import AttentionParams, GaussianAttention, NoAttention

ATTENTION_TYPES = ("none", "gaussian")


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


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the last dimension: ½ Σ (μ² + σ² − 1 − 2 log σ)."""
    return 0.5 * (mu.square() + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(-1)


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

    def _initial(self, batch: int):
        def expand(p):
            return p.expand(batch, *p.shape)

        return expand(self.canvas0), (expand(self.h_enc0), expand(self.c_enc0)), (expand(self.h_dec0), expand(self.c_dec0))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None, return_steps: bool = False,
                return_log_ratio: bool = False) -> DrawOutput:
        """Run the T steps on ``x`` ``[B, C, H, W]``.

        ``noise`` ``[T, B, latent_size]`` fixes the standard-normal draws of the reparameterisation; by default
        each step draws fresh noise. ``return_log_ratio`` adds log q(z_t | x) − log p(z_t) for importance weights.
        """
        batch = x.shape[0]
        canvas, enc_state, dec_state = self._initial(batch)
        kls, log_ratios, canvases, read_steps, write_steps = [], [], [], [], []
        for t in range(self.T):
            x_err = x - torch.sigmoid(canvas)
            r, read_params = self.attention.read(x, x_err, dec_state[0])
            enc_state = self.encoder(torch.cat([r, dec_state[0]], dim=1), enc_state)
            mu, log_sigma = self.posterior(enc_state[0]).chunk(2, dim=-1)
            eps = torch.randn_like(mu) if noise is None else noise[t]
            z = mu + torch.exp(log_sigma) * eps
            kls.append(gaussian_kl(mu, log_sigma))
            if return_log_ratio:
                # log N(z; μ, σ) − log N(z; 0, 1) = Σ ½z² − ½ε² − log σ (the 2π terms cancel)
                log_ratios.append((0.5 * z.square() - 0.5 * eps.square() - log_sigma).sum(-1))
            dec_state = self.decoder(z, dec_state)
            update, write_params = self.attention.write(dec_state[0])
            canvas = canvas + update
            if return_steps:
                canvases.append(canvas)
                read_steps.append(read_params)
                write_steps.append(write_params)
        out = DrawOutput(canvas_logits=canvas, kl=torch.stack(kls, dim=1))
        if return_log_ratio:
            out.log_ratio = torch.stack(log_ratios, dim=1)
        if return_steps:
            out.canvases = torch.stack(canvases)
            if read_steps[0] is not None:
                out.read_params = AttentionParams.stack(read_steps)
                out.write_params = AttentionParams.stack(write_steps)
        return out

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
