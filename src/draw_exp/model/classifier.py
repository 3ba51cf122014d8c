"""The paper's differentiable-attention classifier (section 4.1, Table 1): an LSTM that takes T glimpses of an image
through DRAW's Gaussian read and classifies from its final state. No canvas, no latent, no write.

At each glimpse t the window's centre, stride, variance and intensity are a linear function of the LSTM's previous
state, exactly as DRAW's read takes them from h^dec_{t−1} (eqs. (21)–(24)); the glimpse is γ·F_Y x F_Xᵀ (eq. (27)
without the error image). The filterbank is DRAW's own (``draw_exp.model.attention``). Knows nothing of Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from draw_exp.errors import check_int_range
from draw_exp.model.attention import AttentionParams, filterbank, glimpse, window_params


@dataclass
class ClassifierOutput:
    logits: torch.Tensor  # [B, classes], from the final state
    glimpses: AttentionParams  # each field [T, B]: where each glimpse looked, in pixels


class AttentionClassifier(nn.Module):
    """``T`` glimpses of ``read_size``×``read_size`` Gaussian filters (per channel) over ``image_shape`` ``(C, H, W)``,
    an LSTM of ``lstm_size`` units, and a linear softmax layer over ``classes`` on its last hidden state."""

    def __init__(self, image_shape: tuple[int, int, int], T: int, lstm_size: int, read_size: int, classes: int = 10):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.T = check_int_range("T", T, 1)
        self.lstm_size = check_int_range("lstm_size", lstm_size, 1)
        side = min(self.image_shape[1:])
        self.read_size = check_int_range(
            "attention.read_size", read_size, 1, side, f"at most the shorter image side, {side} pixels"
        )
        self.classes = check_int_range("classes", classes, 2)
        channels = self.image_shape[0]
        self.read_head = nn.Linear(lstm_size, 5)  # h_{t−1} → (g̃x, g̃y, log σ², log δ̃, log γ), eq. (21)
        self.lstm = nn.LSTMCell(channels * read_size * read_size, lstm_size)
        self.output = nn.Linear(lstm_size, classes)
        self.h0 = nn.Parameter(torch.zeros(lstm_size))  # learned initial state, as in DRAW
        self.c0 = nn.Parameter(torch.zeros(lstm_size))

    def read(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, AttentionParams]:
        """The glimpse ``[B, C·N·N]`` of ``x`` ``[B, C, H, W]`` where ``h`` ``[B, L]`` points, and the window."""
        _, height, width = self.image_shape
        params = window_params(self.read_head(h), self.image_shape, self.read_size)  # (21)–(24)
        fx = filterbank(params.gx, params.delta, params.sigma2, self.read_size, width)  # (25)
        fy = filterbank(params.gy, params.delta, params.sigma2, self.read_size, height)  # (26)
        return params.gamma[:, None] * glimpse(x, fx, fy).flatten(1), params  # (27), x alone

    def forward(self, x: torch.Tensor) -> ClassifierOutput:
        h, c = (p.expand(x.shape[0], -1) for p in (self.h0, self.c0))
        windows = []
        for _ in range(self.T):
            r, params = self.read(x, h)
            h, c = self.lstm(r, (h, c))
            windows.append(params)
        return ClassifierOutput(self.output(h), AttentionParams.stack(windows))
