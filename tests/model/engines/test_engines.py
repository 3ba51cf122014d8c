"""Every engine computes DRAW.forward's textbook loop: the loss and every gradient to 1e-5 relative in float32, with
and without attention, for one and three channels; ``auto`` picks the fastest for the device and falls back to the
textbook loop for an attention type the engines do not run."""

import pytest
import torch

from draw_exp.errors import ConfigError
from draw_exp.likelihoods import bernoulli_nll
from draw_exp.model import DRAW, NoAttention, auto_engine


def loss_and_grads(model, engine, x, noise, return_log_ratio=False, kl_weight=1.0):
    """The loss (a term on the log-ratio too, when asked: μ and log σ used beside the KL) and every gradient."""
    model.set_engine(engine, compiled=False)
    model.zero_grad()
    out = model(x, noise=noise, return_log_ratio=return_log_ratio)
    loss = bernoulli_nll(out.canvas_logits, x) + kl_weight * out.kl.sum(1)
    if return_log_ratio:
        loss = loss + 0.3 * out.log_ratio.square().sum(1)
    loss = loss.mean()
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def assert_same(a, b, rtol):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    torch.testing.assert_close(loss_a, loss_b, rtol=rtol, atol=0)
    for name in grads_b:
        scale = grads_b[name].abs().max()
        assert (grads_a[name] - grads_b[name]).abs().max() <= rtol * scale + 1e-12, name


def small(attention="gaussian", shape=(1, 12, 12), T=3, latent=4):
    return DRAW(shape, T=T, latent_size=latent, lstm_size=16, attention_type=attention, read_size=2, write_size=3)


ENGINES = ["fused_loop", "fused_loop_cudagraphs", "handwritten_bptt"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("attention", ["gaussian", "none"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 20, 30)])
def test_each_engine_equals_the_textbook_loop_in_float32(attention, shape, engine):
    torch.manual_seed(0)
    model = DRAW(shape, T=6, latent_size=10, lstm_size=32, attention_type=attention, read_size=3, write_size=4)
    x = torch.rand(8, *shape).bernoulli()
    noise = torch.randn(6, 8, 10)
    assert_same(loss_and_grads(model, engine, x, noise), loss_and_grads(model, "textbook", x, noise), rtol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_is_exact_for_a_window_far_outside_the_image(engine):
    """Centres 60 image widths away, variance 0.05: every filter exponent below −10⁶, where a plain exp/sum
    normalisation underflows to 0/0."""
    torch.manual_seed(3)
    model = small()
    with torch.no_grad():
        model.attention.read_head.bias.copy_(torch.tensor([120.0, -120.0, -3.0, 0.0, 0.0]))
        model.attention.write_head.bias.copy_(torch.tensor([-120.0, 120.0, -3.0, 0.0, 0.0]))
    x = torch.rand(5, 1, 12, 12).bernoulli()
    noise = torch.randn(3, 5, 4)
    loss, grads = loss_and_grads(model, engine, x, noise)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())
    assert_same((loss, grads), loss_and_grads(model, "textbook", x, noise), rtol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_gives_the_textbook_gradients_of_a_kl_weighted_loss(engine):
    """KL warm-up (model.kl_warmup_steps) trains on reconstruction + w·KL with w < 1."""
    torch.manual_seed(4)
    model = small()
    x = torch.rand(6, 1, 12, 12).bernoulli()
    noise = torch.randn(3, 6, 4)
    expected = loss_and_grads(model, "textbook", x, noise, kl_weight=0.3)
    assert_same(loss_and_grads(model, engine, x, noise, kl_weight=0.3), expected, rtol=1e-5)
    unweighted = loss_and_grads(model, "textbook", x, noise)
    assert not torch.allclose(expected[1]["encoder.weight_ih"], unweighted[1]["encoder.weight_ih"])


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_gives_the_textbook_log_ratio_and_its_gradients(engine):
    """The importance-weighted bound's log q − log p, without gradients (evaluation) and through a loss on it."""
    torch.manual_seed(5)
    model = small(T=4, latent=5)
    x = torch.rand(7, 1, 12, 12).bernoulli()
    noise = torch.randn(4, 7, 5)
    expected = loss_and_grads(model, "textbook", x, noise, return_log_ratio=True)
    assert_same(loss_and_grads(model, engine, x, noise, return_log_ratio=True), expected, rtol=1e-5)
    with torch.no_grad():
        model.set_engine("textbook")
        want = model(x, noise=noise, return_log_ratio=True)
        model.set_engine(engine, compiled=False)
        got = model(x, noise=noise, return_log_ratio=True)
    for name in ("canvas_logits", "kl", "log_ratio"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_returns_the_textbook_steps_for_pictures(engine):
    torch.manual_seed(6)
    model = small()
    x = torch.rand(5, 1, 12, 12).bernoulli()
    noise = torch.randn(3, 5, 4)
    with torch.no_grad():
        model.set_engine("textbook")
        want = model(x, noise=noise, return_steps=True)
        model.set_engine(engine, compiled=False)
        got = model(x, noise=noise, return_steps=True)
    torch.testing.assert_close(got.canvases, want.canvases, rtol=1e-5, atol=1e-5)
    for name in ("read_params", "write_params"):
        for field_got, field_want in zip(getattr(got, name), getattr(want, name), strict=True):
            torch.testing.assert_close(field_got, field_want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("engine", ["handwritten_bptt", "fused_loop_cudagraphs", "auto"])
def test_compiled_engines_by_their_config_names_equal_the_textbook_loop(engine):
    """As model.engine names them, compiled where they compile; auto on a CPU is handwritten_bptt."""
    torch.manual_seed(1)
    model = small()
    x = torch.rand(5, 1, 12, 12).bernoulli()
    noise = torch.randn(3, 5, 4)
    expected = loss_and_grads(model, "textbook", x, noise)
    model.set_engine(engine)
    model.zero_grad()
    out = model(x, noise=noise)
    loss = (bernoulli_nll(out.canvas_logits, x) + out.kl.sum(1)).mean()
    loss.backward()
    assert_same((loss.detach(), {n: p.grad for n, p in model.named_parameters()}), expected, rtol=1e-5)


def test_auto_engine_is_the_fastest_measured_for_the_device():
    model = small()
    assert auto_engine("cpu", model.attention) == "handwritten_bptt"
    assert auto_engine("cuda", model.attention) == "fused_loop"
    assert model.engine_for(torch.device("cpu")) == "handwritten_bptt"
    model.set_engine("fused_loop")
    assert model.engine_for(torch.device("cpu")) == "fused_loop"


class CentreCrop(NoAttention):
    """A new attention type, as a researcher would add one: its textbook read and write only."""

    def __init__(self, image_shape, lstm_size):
        super().__init__(image_shape, lstm_size)
        self.read_features = 2 * image_shape[0] * 4 * 4

    def read(self, x, x_err, h_dec):
        crop = slice(x.shape[2] // 2 - 2, x.shape[2] // 2 + 2), slice(x.shape[3] // 2 - 2, x.shape[3] // 2 + 2)
        return torch.cat([x[:, :, crop[0], crop[1]].flatten(1), x_err[:, :, crop[0], crop[1]].flatten(1)], 1), None


def test_a_new_attention_type_runs_on_the_textbook_loop_and_auto_falls_back_to_it():
    torch.manual_seed(8)
    model = small(attention="none")
    model.attention = CentreCrop(model.image_shape, 16)
    model.encoder = torch.nn.LSTMCell(model.attention.read_features + 16, 16)
    x = torch.rand(3, 1, 12, 12).bernoulli()
    noise = torch.randn(3, 3, 4)
    assert model.engine_for(torch.device("cpu")) == "textbook" == auto_engine("cuda", model.attention)
    assert_same(loss_and_grads(model, "auto", x, noise), loss_and_grads(model, "textbook", x, noise), rtol=0)
    with pytest.raises(ConfigError, match=r"^model.engine='handwritten_bptt' does not run CentreCrop"):
        model.set_engine("handwritten_bptt")


@pytest.mark.parametrize("engine", ["fused_loop", "handwritten_bptt"])
def test_bf16_autocast_stays_close_to_float32(engine):
    """Mixed precision: the loss within 1% and gradients pointing the same way (cosine > 0.99). Under autocast
    the hand-written backward runs the fused loop."""
    torch.manual_seed(2)
    model = DRAW((1, 28, 28), T=8, latent_size=10, lstm_size=64, attention_type="gaussian", read_size=2, write_size=5)
    x = torch.rand(16, 1, 28, 28).bernoulli()
    noise = torch.randn(8, 16, 10)
    loss32, grads32 = loss_and_grads(model, engine, x, noise)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.zero_grad()
        out = model(x, noise=noise)
    loss16 = (bernoulli_nll(out.canvas_logits.float(), x) + out.kl.float().sum(1)).mean()
    loss16.backward()
    assert abs(loss16.detach() - loss32) / loss32 < 0.01
    flat32 = torch.cat([g.flatten() for g in grads32.values()])
    flat16 = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.nn.functional.cosine_similarity(flat32, flat16, dim=0) > 0.99
