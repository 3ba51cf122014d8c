"""Read and write operations of DRAW: no attention, and the paper's Gaussian filterbank.

Both attention types share one interface, used by :class:`draw_exp.model.draw.DRAW`:

- ``read(x, x_err, h_dec) -> (r, params)``: ``r`` is ``[B, read_features]``.
- ``write(h_dec) -> (canvas_update, params)``: ``canvas_update`` is ``[B, C, H, W]``.

``params`` are the attention parameters of that step (``None`` without attention), kept for pictures.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


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
        return AttentionParams(*(torch.stack(field) for field in zip(*steps)))


def filterbank(center: torch.Tensor, delta: torch.Tensor, sigma2: torch.Tensor, grid_size: int, length: int) -> torch.Tensor:
    """The paper's filterbank along one axis: ``F[b, i, a] ∝ exp(-(a - μ_i)² / (2σ²))``, normalised over ``a``.

    ``μ_i = center + (i - N/2 - 0.5)·delta`` for ``i = 1..N``. ``center``, ``delta``, ``sigma2``: ``[B]``.
    Returns ``[B, N, length]``. The normalisation is a softmax, the same function as exp/sum but exact when
    a window lies far outside the image (exp/sum underflows to 0/0 there).
    """
    return gaussian_rows(grid_centres(center, delta, grid_size), sigma2[:, None].expand(-1, grid_size), length)


def grid_centres(center: torch.Tensor, delta: torch.Tensor, grid_size: int) -> torch.Tensor:
    """μ_i = center + (i − N/2 − 0.5)·delta for i = 1..N: ``[B, N]``."""
    i = torch.arange(1, grid_size + 1, dtype=center.dtype, device=center.device)
    return center[:, None] + (i - grid_size / 2 - 0.5) * delta[:, None]


def gaussian_rows(mu: torch.Tensor, sigma2: torch.Tensor, length: int) -> torch.Tensor:
    """Rows ∝ exp(−(a − μ)² / 2σ²) over a = 1..length, normalised: ``mu``, ``sigma2`` ``[B, G]`` → ``[B, G, length]``."""
    a = torch.arange(1, length + 1, dtype=mu.dtype, device=mu.device)
    return torch.softmax(-((a - mu[:, :, None]) ** 2) / (2 * sigma2[:, :, None]), dim=-1)


def filterbank_batch_last(center, delta, sigma2, grid_size: int, length: int) -> torch.Tensor:
    """:func:`filterbank` with the batch last: ``[N, length, B]``, the same numbers as ``filterbank(...)[b]``.

    Normalised as a softmax is, by exp(e − max e) / Σ exp(e − max e), with the maximum in closed form (the
    pixel nearest the filter's centre) in place of a max-reduction: one pass fewer over the filters.
    """
    mu = grid_centres(center, delta, grid_size).t()  # [N, B]
    a = torch.arange(1, length + 1, dtype=center.dtype, device=center.device)[:, None, None]
    scale = -0.5 / sigma2
    # The shift cancels in the ratio, so it carries no gradient.
    peak = (scale * (mu.round().clamp(1, length) - mu) ** 2).detach()  # [N, B]
    weights = torch.exp(scale * (a - mu) ** 2 - peak)  # [length, N, B]
    return (weights / weights.sum(0)).transpose(0, 1)


def glimpse(images: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """``F_Y · image · F_Xᵀ`` per channel: ``[B, C, H, W]`` → ``[B, C, N, N]``."""
    return fy[:, None] @ images @ fx[:, None].transpose(-1, -2)


def scatter(patch: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """``F_Yᵀ · patch · F_X`` per channel, the adjoint of :func:`glimpse`: ``[B, C, N, N]`` → ``[B, C, H, W]``."""
    return fy[:, None].transpose(-1, -2) @ patch @ fx[:, None]


class NoAttention(nn.Module):
    """Read the whole image and error image; write the whole canvas through a linear map."""

    def __init__(self, image_shape: tuple[int, int, int], lstm_size: int):
        super().__init__()
        self.image_shape = tuple(image_shape)
        channels, height, width = self.image_shape
        self.read_features = 2 * channels * height * width
        self.head_features = channels * height * width  # outputs of the fused h^dec projection it uses
        self.write_linear = nn.Linear(lstm_size, channels * height * width)

    def read(self, x: torch.Tensor, x_err: torch.Tensor, h_dec: torch.Tensor):
        return torch.cat([x.flatten(1), x_err.flatten(1)], dim=1), None

    def write(self, h_dec: torch.Tensor):
        return self.write_linear(h_dec).view(-1, *self.image_shape), None

    # --- the fused interface used by DRAW.forward (see GaussianAttention) ---
    @property
    def step_invariant_features(self) -> int:
        return self.read_features // 2  # x itself: its encoder projection is computed once, not every step

    def head_weights(self):
        return self.write_linear.weight, self.write_linear.bias

    def read_filters(self, head_out):
        return None

    def read_fast(self, x, x_err, filters):
        return x_err.flatten(1)  # the step-invariant x part is added by the caller

    def write_fast(self, head_out):
        return head_out.view(-1, *self.image_shape), None, None

    # --- the batch-last interface of draw_exp.model.recurrence (see GaussianAttention) ---
    def read_batch_last(self, x, canvas, heads):
        return (x - torch.sigmoid(canvas)).flatten(0, 2)  # x's own part is step-invariant: the caller adds it

    def write_batch_last(self, heads):
        return heads.view(*self.image_shape, -1)


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
        self.head_features = 5 + 5 + channels * write_size * write_size  # read head, write head, patch
        self.read_head = nn.Linear(lstm_size, 5)
        self.write_head = nn.Linear(lstm_size, 5)
        self.write_patch = nn.Linear(lstm_size, channels * write_size * write_size)

    def attention_params(self, head_out: torch.Tensor, grid_size: int, dim: int = -1) -> AttentionParams:
        """Map the head's 5 outputs (along ``dim``) to pixel-space parameters, as in the paper's equations
        (21)-(24)."""
        _, height, width = self.image_shape
        gx_tilde, gy_tilde, log_sigma2, log_delta_tilde, log_gamma = head_out.unbind(dim)
        gx = (width + 1) / 2 * (gx_tilde + 1)
        gy = (height + 1) / 2 * (gy_tilde + 1)
        # With N = 1 the single filter sits on the centre and the stride is unused; max() avoids 0/0.
        delta = (max(height, width) - 1) / max(grid_size - 1, 1) * torch.exp(log_delta_tilde)
        return AttentionParams(gx, gy, delta, torch.exp(log_sigma2), torch.exp(log_gamma))

    def filterbanks(self, params: AttentionParams, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        _, height, width = self.image_shape
        fx = filterbank(params.gx, params.delta, params.sigma2, grid_size, width)  # [B, N, W]
        fy = filterbank(params.gy, params.delta, params.sigma2, grid_size, height)  # [B, N, H]
        return fx, fy

    def read(self, x: torch.Tensor, x_err: torch.Tensor, h_dec: torch.Tensor):
        params = self.attention_params(self.read_head(h_dec), self.read_size)
        fx, fy = self.filterbanks(params, self.read_size)
        # x and x̂ go through the same filters: one batched product over 2C channels.
        patches = glimpse(torch.cat([x, x_err], dim=1), fx, fy)  # [B, 2C, N, N]
        return params.gamma[:, None] * patches.flatten(1), params

    def write(self, h_dec: torch.Tensor):
        params = self.attention_params(self.write_head(h_dec), self.write_size)
        fx, fy = self.filterbanks(params, self.write_size)
        patch = self.write_patch(h_dec).view(-1, self.image_shape[0], self.write_size, self.write_size)
        # 1/γ̂ on the N×N patch, not the H×W image (the same product; see write_batch_last)
        return scatter(patch / params.gamma[:, None, None, None], fx, fy), params

    # --- the fused interface used by DRAW.forward ---
    # The read at step t+1 and the write at step t both read h^dec_t, so one matrix product gives both heads and
    # the patch ("head_out": [read head (5) | write head (5) | patch (C·w·w)]), and one filterbank evaluation
    # per axis serves both grids.
    step_invariant_features = 0

    def head_weights(self):
        weight = torch.cat([self.read_head.weight, self.write_head.weight, self.write_patch.weight])
        bias = torch.cat([self.read_head.bias, self.write_head.bias, self.write_patch.bias])
        return weight, bias

    def read_filters(self, head_out):
        params = self.attention_params(head_out[:, :5], self.read_size)
        return (*self.filterbanks(params, self.read_size), params)

    def read_fast(self, x, x_err, filters):
        fx, fy, params = filters
        return params.gamma[:, None] * glimpse(torch.cat([x, x_err], dim=1), fx, fy).flatten(1)

    def write_fast(self, head_out):
        """This step's canvas update and write parameters, and the next step's read filters."""
        read = self.attention_params(head_out[:, :5], self.read_size)
        write = self.attention_params(head_out[:, 5:10], self.write_size)
        _, height, width = self.image_shape
        n_w, n_r = self.write_size, self.read_size
        fx = paired_filterbanks(write.gx, read.gx, write, read, n_w, n_r, width)
        fy = paired_filterbanks(write.gy, read.gy, write, read, n_w, n_r, height)
        patch = head_out[:, 10:].view(-1, self.image_shape[0], n_w, n_w) / write.gamma[:, None, None, None]
        update = scatter(patch, fx[:, :n_w], fy[:, :n_w])
        return update, (fx[:, n_w:], fy[:, n_w:], read), write

    # --- the batch-last interface of draw_exp.model.recurrence ---
    # Images are [C, H, W, B] and heads [P, B] (the fused heads' rows): with the batch innermost and contiguous,
    # every filterbank and glimpse sum runs over whole vectors of independent images, which compiled CPU code
    # does at full width, where [B, N, 28]-shaped sums and batched 2x28 products do not.
    def filterbanks_batch_last(self, heads, grid_size: int) -> tuple[torch.Tensor, torch.Tensor, AttentionParams]:
        _, height, width = self.image_shape
        params = self.attention_params(heads, grid_size, dim=0)
        fx = filterbank_batch_last(params.gx, params.delta, params.sigma2, grid_size, width)  # [N, W, B]
        fy = filterbank_batch_last(params.gy, params.delta, params.sigma2, grid_size, height)  # [N, H, B]
        return fx, fy, params

    def read_batch_last(self, x, canvas, heads):
        """r_t ``[2·C·N·N, B]`` (in :meth:`read`'s order) from x and c_{t−1} ``[C, H, W, B]`` and the heads."""
        fx, fy, params = self.filterbanks_batch_last(heads[:5], self.read_size)
        images = torch.stack([x, x - torch.sigmoid(canvas)])  # [2, C, H, W, B]
        rows = (fy[:, :, None] * images[:, :, None]).sum(3)  # Σ_h F_Y[p, h] image[h, w]: [2, C, N, W, B]
        patches = (rows[:, :, :, None] * fx).sum(4)  # Σ_w rows[p, w] F_X[q, w]: [2, C, N, N, B]
        return params.gamma * patches.flatten(0, 3)

    def write_batch_last(self, heads):
        """write(h^dec_t) ``[C, H, W, B]`` from the heads."""
        fx, fy, params = self.filterbanks_batch_last(heads[5:10], self.write_size)
        # (1/γ̂)·F̂_Yᵀ w F̂_X with the 1/γ̂ applied to the N×N patch rather than the H×W image: the same product,
        # and γ̂'s gradient then needs no pass over the image.
        patch = heads[10:].view(self.image_shape[0], self.write_size, self.write_size, -1) / params.gamma
        cols = (patch[:, :, :, None] * fx).sum(2)  # Σ_q patch[p, q] F_X[q, w]: [C, N, W, B]
        return (fy[:, :, None] * cols[:, :, None]).sum(1)  # Σ_p F_Y[p, h] cols[p, w]


def paired_filterbanks(center_a, center_b, a: AttentionParams, b: AttentionParams, n_a: int, n_b: int, length: int):
    """Two grids' filterbanks along one axis in one evaluation: ``[B, n_a + n_b, length]``, rows of grid a first.
    Each row is exactly :func:`filterbank`'s."""
    mu = torch.cat([grid_centres(center_a, a.delta, n_a), grid_centres(center_b, b.delta, n_b)], dim=1)
    sigma2 = torch.cat([a.sigma2[:, None].expand(-1, n_a), b.sigma2[:, None].expand(-1, n_b)], dim=1)
    return gaussian_rows(mu, sigma2, length)
