"""Read and write (the paper's section 3): the interface every attention type implements, no attention (3.1) and
the Gaussian filterbank (3.2), written as the paper writes them, equation numbers beside the lines.

Faster forms of the same functions (fused projections, batch-last layouts) live with the engines that use them,
in ``draw_exp.model.engines``; a new attention type needs only what :class:`Attention` lists, and runs on the
textbook engine.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import nn

from draw_exp.errors import check_choice, check_int_range

ATTENTION_TYPES = ("none", "gaussian")


class AttentionParams(NamedTuple):
    """One step's filterbank parameters, each ``[B]`` (or ``[T, B]`` when stacked over steps).

    Coordinates are in pixels, 1-based: pixel ``a`` of a row of ``A`` pixels sits at ``a``, so the
    centre of the image is ``(A + 1) / 2``, which is where the paper's ``g̃ = 0`` lands.
    """

    gx: torch.Tensor
    gy: torch.Tensor
    delta: torch.Tensor  # stride between grid points
    sigma2: torch.Tensor  # variance of each Gaussian filter
    gamma: torch.Tensor  # intensity

    @staticmethod
    def stack(steps: list[AttentionParams]) -> AttentionParams:
        return AttentionParams(*(torch.stack(field) for field in zip(*steps, strict=True)))


class Attention(Protocol):
    """What DRAW needs of an attention type. ``B`` images of ``C × H × W``, ``L`` the decoder's width.

    The parameters returned beside ``r_t`` and the canvas update are the step's attention window, kept for
    pictures; ``None`` where there is no window.
    """

    image_shape: tuple[int, int, int]  # (C, H, W)
    read_features: int  # the length of r_t

    def read(
        self, x: torch.Tensor, x_err: torch.Tensor, h_dec: torch.Tensor
    ) -> tuple[torch.Tensor, AttentionParams | None]:
        """r_t ``[B, read_features]`` from x, x̂_t ``[B, C, H, W]`` and h^dec_{t−1} ``[B, L]``: eq. (4)."""
        ...

    def write(self, h_dec: torch.Tensor) -> tuple[torch.Tensor, AttentionParams | None]:
        """write(h^dec_t) ``[B, C, H, W]``, the canvas update of eq. (8), from h^dec_t ``[B, L]``."""
        ...


def build_attention(
    image_shape: tuple[int, int, int],
    lstm_size: int,
    attention_type: str,
    read_size: int | None = None,
    write_size: int | None = None,
) -> Attention:
    """An attention by its name in :data:`ATTENTION_TYPES` (the ``attention.type`` config key)."""
    check_choice("attention.type", attention_type, ATTENTION_TYPES)
    if attention_type == "none":
        return NoAttention(image_shape, lstm_size)
    side = min(image_shape[1:])
    why = f"at most the shorter image side, {side} pixels"
    check_int_range("attention.read_size", read_size, 1, side, why)
    check_int_range("attention.write_size", write_size, 1, side, why)
    return GaussianAttention(image_shape, lstm_size, read_size, write_size)


class NoAttention(nn.Module):
    """Read the whole image and error image; write the whole canvas through a linear map (section 3.1)."""

    def __init__(self, image_shape: tuple[int, int, int], lstm_size: int):
        super().__init__()
        self.image_shape = tuple(image_shape)
        channels, height, width = self.image_shape
        self.read_features = 2 * channels * height * width
        self.write_linear = nn.Linear(lstm_size, channels * height * width)

    def read(self, x: torch.Tensor, x_err: torch.Tensor, h_dec: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.cat([x.flatten(1), x_err.flatten(1)], dim=1), None  # (17)

    def write(self, h_dec: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.write_linear(h_dec).view(-1, *self.image_shape), None  # (18)


def grid_centres(centre: torch.Tensor, delta: torch.Tensor, grid_size: int) -> torch.Tensor:
    """μ_i = g + (i − N/2 − 0.5)·δ for i = 1..N, eqs. (19), (20): ``centre``, ``delta`` ``[B]`` → ``[B, N]``."""
    i = torch.arange(1, grid_size + 1, dtype=centre.dtype, device=centre.device)
    return centre[:, None] + (i - grid_size / 2 - 0.5) * delta[:, None]


def gaussian_rows(mu: torch.Tensor, sigma2: torch.Tensor, length: int) -> torch.Tensor:
    """Rows ∝ exp(−(a − μ)² / 2σ²) over a = 1..length, normalised, eqs. (25), (26): ``mu``, ``sigma2`` ``[B, G]``
    → ``[B, G, length]``. The normalisation is a softmax, the same function as exp/sum but exact when a window lies
    far outside the image (exp/sum underflows to 0/0 there)."""
    a = torch.arange(1, length + 1, dtype=mu.dtype, device=mu.device)
    return torch.softmax(-((a - mu[:, :, None]) ** 2) / (2 * sigma2[:, :, None]), dim=-1)


def filterbank(
    centre: torch.Tensor, delta: torch.Tensor, sigma2: torch.Tensor, grid_size: int, length: int
) -> torch.Tensor:
    """The filterbank along one axis, ``F[b, i, a] ∝ exp(−(a − μ_i)² / 2σ²)`` normalised over ``a``: eqs. (19)–(20)
    and (25)–(26). ``centre``, ``delta``, ``sigma2``: ``[B]``. Returns ``[B, N, length]``."""
    return gaussian_rows(grid_centres(centre, delta, grid_size), sigma2[:, None].expand(-1, grid_size), length)


def glimpse(images: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """``F_Y · image · F_Xᵀ`` per channel: ``[B, C, H, W]`` → ``[B, C, N, N]``."""
    return fy[:, None] @ images @ fx[:, None].transpose(-1, -2)


def scatter(patch: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """``F_Yᵀ · patch · F_X`` per channel, the adjoint of :func:`glimpse`: ``[B, C, N, N]`` → ``[B, C, H, W]``."""
    return fy[:, None].transpose(-1, -2) @ patch @ fx[:, None]


def window_params(
    head_out: torch.Tensor, image_shape: tuple[int, int, int], grid_size: int, dim: int = -1
) -> AttentionParams:
    """The window of an N×N grid over images of ``image_shape`` ``(C, H, W)``, in pixels, from a linear head's
    5 outputs (g̃x, g̃y, log σ², log δ̃, log γ) along ``dim``: eqs. (21)–(24)."""
    _, height, width = image_shape
    gx_tilde, gy_tilde, log_sigma2, log_delta_tilde, log_gamma = head_out.unbind(dim)  # (21)
    gx = (width + 1) / 2 * (gx_tilde + 1)  # (22)
    gy = (height + 1) / 2 * (gy_tilde + 1)  # (23)
    # With N = 1 the single filter sits on the centre and the stride is unused; max() avoids 0/0.
    delta = (max(height, width) - 1) / max(grid_size - 1, 1) * torch.exp(log_delta_tilde)  # (24)
    return AttentionParams(gx, gy, delta, torch.exp(log_sigma2), torch.exp(log_gamma))


class GaussianAttention(nn.Module):
    """The paper's selective attention (section 3.2): an N×N grid of Gaussian filters per channel.

    Read and write have their own grid sizes and their own linear heads for (g̃x, g̃y, log σ², log δ̃, log γ).
    """

    def __init__(self, image_shape: tuple[int, int, int], lstm_size: int, read_size: int, write_size: int):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.read_size = read_size
        self.write_size = write_size
        channels = self.image_shape[0]
        self.read_features = 2 * channels * read_size * read_size
        self.read_head = nn.Linear(lstm_size, 5)
        self.write_head = nn.Linear(lstm_size, 5)
        self.write_patch = nn.Linear(lstm_size, channels * write_size * write_size)

    def attention_params(self, head_out: torch.Tensor, grid_size: int, dim: int = -1) -> AttentionParams:
        """Pixel-space parameters from a head's 5 outputs (along ``dim``), ``W(h^dec)`` of eq. (21)."""
        return window_params(head_out, self.image_shape, grid_size, dim)

    def filterbanks(self, params: AttentionParams, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """F_X ``[B, N, W]`` and F_Y ``[B, N, H]``: eqs. (19), (20), (25), (26)."""
        _, height, width = self.image_shape
        fx = filterbank(params.gx, params.delta, params.sigma2, grid_size, width)
        fy = filterbank(params.gy, params.delta, params.sigma2, grid_size, height)
        return fx, fy

    def read(self, x: torch.Tensor, x_err: torch.Tensor, h_dec: torch.Tensor) -> tuple[torch.Tensor, AttentionParams]:
        params = self.attention_params(self.read_head(h_dec), self.read_size)
        fx, fy = self.filterbanks(params, self.read_size)
        gamma = params.gamma[:, None]
        r = torch.cat([gamma * glimpse(x, fx, fy).flatten(1), gamma * glimpse(x_err, fx, fy).flatten(1)], dim=1)  # (27)
        return r, params

    def write(self, h_dec: torch.Tensor) -> tuple[torch.Tensor, AttentionParams]:
        params = self.attention_params(self.write_head(h_dec), self.write_size)
        fx, fy = self.filterbanks(params, self.write_size)
        patch = self.write_patch(h_dec).view(-1, self.image_shape[0], self.write_size, self.write_size)  # w_t (28)
        return scatter(patch, fx, fy) / params.gamma[:, None, None, None], params  # (29)
