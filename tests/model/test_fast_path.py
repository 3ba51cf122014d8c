"""Every engine of DRAW.forward computes the textbook loop's function, for loss and every gradient: the fused step
loop (eager, and compiled in CUDA-graph mode), and the hand-written backward through time (eager and compiled)."""

import pytest
import torch

from draw_exp.likelihoods import bernoulli_nll
from draw_exp.model import DRAW
from draw_exp.model.reference import reference_forward


def loss_and_grads(model, fn, x, noise):
    model.zero_grad()
    out = fn(model, x, noise)
    loss = bernoulli_nll(out.canvas_logits, x) + out.kl.sum(1)
    if out.log_ratio is not None:  # a term on μ and log σ themselves, beside the KL
        loss = loss + 0.3 * out.log_ratio.square().sum(1)
    loss = loss.mean()
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def fast(model, x, noise):
    return model(x, noise=noise)


def assert_same(a, b, rtol):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=rtol, atol=0)
    for name in grads_b:
        scale = grads_b[name].abs().max()
        assert (grads_a[name] - grads_b[name]).abs().max() <= rtol * scale + 1e-12, name


@pytest.mark.parametrize("hand_written", [False, True], ids=["fused_loop", "handwritten_bptt"])
@pytest.mark.parametrize("attention", ["gaussian", "none"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 20, 30)])
def test_fast_forward_equals_the_textbook_loop_in_float32(attention, shape, hand_written):
    torch.manual_seed(0)
    model = DRAW(shape, T=6, latent_size=10, lstm_size=32, attention=attention, read_size=3, write_size=4,
                 engine="fused_loop")
    x = torch.rand(8, *shape).bernoulli()
    noise = torch.randn(6, 8, 10)
    expected = loss_and_grads(model, reference_forward, x, noise)
    if hand_written:
        model.use_hand_written_backward(compile=False)
    assert_same(loss_and_grads(model, fast, x, noise), expected, rtol=1e-5)


def test_hand_written_backward_is_exact_for_a_window_far_outside_the_image():
    """The filterbank's closed-form maximum keeps exp() in range where a plain exp/sum underflows to 0/0."""
    torch.manual_seed(3)
    model = DRAW((1, 12, 12), T=3, latent_size=4, lstm_size=16, attention="gaussian", read_size=2, write_size=3)
    with torch.no_grad():  # centres 60 image widths away, variance 0.05: every exponent below −10⁶
        model.attention.read_head.bias.copy_(torch.tensor([120.0, -120.0, -3.0, 0.0, 0.0]))
        model.attention.write_head.bias.copy_(torch.tensor([-120.0, 120.0, -3.0, 0.0, 0.0]))
    x = torch.rand(5, 1, 12, 12).bernoulli()
    noise = torch.randn(3, 5, 4)
    expected = loss_and_grads(model, reference_forward, x, noise)
    model.use_hand_written_backward(compile=False)
    loss, grads = loss_and_grads(model, fast, x, noise)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())
    assert_same((loss, grads), expected, rtol=1e-5)


@pytest.mark.parametrize("engine", ["handwritten_bptt", "fused_loop_cudagraphs", "auto", "textbook"])
def test_each_engine_by_name_equals_the_textbook_loop(engine):
    """The engines as model.engine names them, compiled where they compile; auto on a CPU is handwritten_bptt."""
    torch.manual_seed(1)
    model = DRAW((1, 12, 12), T=3, latent_size=4, lstm_size=16, attention="gaussian", read_size=2, write_size=3)
    x = torch.rand(5, 1, 12, 12).bernoulli()
    noise = torch.randn(3, 5, 4)
    expected = loss_and_grads(model, reference_forward, x, noise)
    model.set_engine(engine)
    assert_same(loss_and_grads(model, fast, x, noise), expected, rtol=1e-5)
    with torch.no_grad():  # evaluation: the log-ratio of the importance-weighted bound, through the same engine
        want = reference_forward(model, x, noise, return_log_ratio=True).log_ratio
        torch.testing.assert_close(model(x, noise=noise, return_log_ratio=True).log_ratio, want, rtol=1e-5, atol=1e-5)


def test_auto_engine_is_the_fastest_measured_for_the_device():
    from draw_exp.model.draw import auto_engine

    assert auto_engine("cpu") == "handwritten_bptt"
    model = DRAW((1, 12, 12), T=3, latent_size=4, lstm_size=16, engine="auto")
    assert model.engine_for(torch.device("cpu")) == "handwritten_bptt"
    model.set_engine("fused_loop")
    assert model.engine_for(torch.device("cpu")) == "fused_loop"


@pytest.mark.parametrize("hand_written", [False, True])
def test_bf16_autocast_stays_close_to_float32(hand_written):
    """Mixed precision: the loss within 1% and gradients pointing the same way (cosine > 0.99). Under autocast
    a model set to the hand-written backward runs the step loop."""
    torch.manual_seed(2)
    model = DRAW((1, 28, 28), T=8, latent_size=10, lstm_size=64, attention="gaussian", read_size=2, write_size=5,
                 engine="fused_loop")
    if hand_written:
        model.use_hand_written_backward(compile=False)
    x = torch.rand(16, 1, 28, 28).bernoulli()
    noise = torch.randn(8, 16, 10)
    loss32, grads32 = loss_and_grads(model, fast, x, noise)

    def bf16(model, x, noise):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, noise=noise)
        out.canvas_logits, out.kl = out.canvas_logits.float(), out.kl.float()
        return out

    loss16, grads16 = loss_and_grads(model, bf16, x, noise)
    assert abs(loss16 - loss32) / loss32 < 0.01
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([g.flatten() for g in grads16.values()])
    assert torch.nn.functional.cosine_similarity(flat32, flat16, dim=0) > 0.99


def test_hand_written_recurrence_without_gradients_gives_the_step_loops_bound_and_log_ratio():
    """Evaluation (no_grad, log q − log p for importance weights) through the recurrence equals the step loop's."""
    torch.manual_seed(4)
    model = DRAW((1, 12, 12), T=4, latent_size=5, lstm_size=16, attention="gaussian", read_size=2, write_size=3,
                 engine="fused_loop")
    x = torch.rand(7, 1, 12, 12).bernoulli()
    noise = torch.randn(4, 7, 5)
    with torch.no_grad():
        expected = model(x, noise=noise, return_log_ratio=True)
        model.use_hand_written_backward(compile=False)
        out = model(x, noise=noise, return_log_ratio=True)
    for name in ("canvas_logits", "kl", "log_ratio"):
        torch.testing.assert_close(getattr(out, name), getattr(expected, name), rtol=1e-5, atol=1e-5)


def test_hand_written_backward_through_the_log_ratio_equals_the_step_loops():
    """A loss on log q − log p (μ and log σ used beside the KL, as a training objective on importance weights
    would) gets the step loop's gradients: the recurrence's backward adds the μ and log σ gradients to the KL's."""
    torch.manual_seed(5)
    model = DRAW((1, 12, 12), T=4, latent_size=5, lstm_size=16, attention="gaussian", read_size=2, write_size=3,
                 engine="fused_loop")
    x = torch.rand(7, 1, 12, 12).bernoulli()
    noise = torch.randn(4, 7, 5)

    def with_log_ratio(model, x, noise):
        return model(x, noise=noise, return_log_ratio=True)

    expected = loss_and_grads(model, with_log_ratio, x, noise)
    model.use_hand_written_backward(compile=False)
    assert_same(loss_and_grads(model, with_log_ratio, x, noise), expected, rtol=1e-5)


def replays_into_static_outputs(step):
    """``step`` as a CUDA graph replays it when no gradient is recorded (model.engine=fused_loop_cudagraphs): every
    call writes its outputs into the same buffers, overwriting the previous call's."""
    buffers = None

    def replay(*args):
        nonlocal buffers
        values, spec = torch.utils._pytree.tree_flatten(step(*args))
        if buffers is None:
            buffers = [v.clone() if isinstance(v, torch.Tensor) else v for v in values]
        for buffer, value in zip(buffers, values):
            if isinstance(value, torch.Tensor):
                buffer.copy_(value)
        return torch.utils._pytree.tree_unflatten(buffers, spec)

    return replay


def test_step_loop_without_gradients_keeps_each_steps_outputs_when_the_next_step_overwrites_them():
    """Evaluation and pictures through CUDA-graph steps, emulated on the CPU: the bound, log-ratio, canvases
    and attention of every step equal those of plain calls."""
    torch.manual_seed(6)
    model = DRAW((1, 12, 12), T=4, latent_size=5, lstm_size=16, attention="gaussian", read_size=2, write_size=3,
                 engine="fused_loop")
    x = torch.rand(7, 1, 12, 12).bernoulli()
    noise = torch.randn(4, 7, 5)
    with torch.no_grad():
        expected = model(x, noise=noise, return_log_ratio=True, return_steps=True)
        model._step = replays_into_static_outputs(model._step)
        out = model(x, noise=noise, return_log_ratio=True, return_steps=True)
    for name in ("canvas_logits", "kl", "log_ratio", "canvases"):
        torch.testing.assert_close(getattr(out, name), getattr(expected, name), rtol=0, atol=0)
    for name in ("read_params", "write_params"):
        for got, want in zip(getattr(out, name), getattr(expected, name)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
