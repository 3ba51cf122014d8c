"""The fused step loop's own property: under CUDA graphs (fused_loop_cudagraphs) a replayed step overwrites the
previous call's outputs, and the loop still keeps every step's values."""

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
