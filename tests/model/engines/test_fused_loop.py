"""The fused step loop's own properties: under CUDA graphs (fused_loop_cudagraphs) a replayed step overwrites the
previous call's outputs, and the loop still keeps every step's values; on a GPU its LSTM cell is nn.LSTMCell's
fused kernel, the same function as the cell's equations."""

import pytest
import torch

from draw_exp.model import DRAW
from draw_exp.model.engines import fused_loop


def replays_into_static_outputs(step):
    """``step`` as a CUDA graph replays it when no gradient is recorded: every call writes its outputs into the same
    buffers, overwriting the previous call's."""
    buffers = None

    def replay(*args):
        nonlocal buffers
        values, spec = torch.utils._pytree.tree_flatten(step(*args))
        if buffers is None:
            buffers = [v.clone() if isinstance(v, torch.Tensor) else v for v in values]
        for buffer, value in zip(buffers, values, strict=True):
            if isinstance(value, torch.Tensor):
                buffer.copy_(value)
        return torch.utils._pytree.tree_unflatten(buffers, spec)

    return replay


def test_step_loop_without_gradients_keeps_each_steps_outputs_when_the_next_step_overwrites_them():
    """Evaluation and pictures through CUDA-graph steps, emulated on the CPU: the bound, log-ratio, canvases
    and attention of every step equal those of plain calls."""
    torch.manual_seed(6)
    model = DRAW(
        (1, 12, 12),
        T=4,
        latent_size=5,
        lstm_size=16,
        attention_type="gaussian",
        read_size=2,
        write_size=3,
        engine="fused_loop",
    )
    x = torch.rand(7, 1, 12, 12).bernoulli()
    noise = torch.randn(4, 7, 5)
    with torch.no_grad():
        expected = fused_loop.forward(model, x, noise, return_steps=True, return_log_ratio=True)
        out = fused_loop.forward(
            model, x, noise, return_steps=True, return_log_ratio=True, step=replays_into_static_outputs(fused_loop.step)
        )
    for name in ("canvas_logits", "kl", "log_ratio", "canvases"):
        torch.testing.assert_close(getattr(out, name), getattr(expected, name), rtol=0, atol=0)
    for name in ("read_params", "write_params"):
        for got, want in zip(getattr(out, name), getattr(expected, name), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused LSTM kernel is CUDA's alone")
def test_the_fused_lstm_kernel_on_a_gpu_is_the_lstm_cells_equations():
    torch.manual_seed(0)
    gates, more_gates = (torch.randn(5, 4 * 7, device="cuda", requires_grad=True) for _ in range(2))
    cell = torch.randn(5, 7, device="cuda", requires_grad=True)
    h, new_cell = fused_loop.lstm_cell(gates, more_gates, cell)
    i, f, g, o = (gates + more_gates).chunk(4, dim=1)  # nn.LSTMCell's gate order
    expected_cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    expected_h = torch.sigmoid(o) * torch.tanh(expected_cell)
    torch.testing.assert_close(new_cell, expected_cell)
    torch.testing.assert_close(h, expected_h)
    weights = torch.randn_like(h), torch.randn_like(new_cell)
    got = torch.autograd.grad((h * weights[0]).sum() + (new_cell * weights[1]).sum(), (gates, more_gates, cell))
    want = torch.autograd.grad(
        (expected_h * weights[0]).sum() + (expected_cell * weights[1]).sum(), (gates, more_gates, cell)
    )
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
