"""The DRAW recurrence: KL, shapes, gradients, sampling and reproducibility."""

import pytest
import torch

from draw_exp.errors import ConfigError
from draw_exp.model import DRAW


def small(shape=(1, 28, 28), attention="gaussian", **kw):
    kw.setdefault("engine", "textbook")
    return DRAW(shape, T=3, latent_size=4, lstm_size=16, attention_type=attention, read_size=2, write_size=3, **kw)


def test_forward_kl_is_that_of_each_steps_posterior():
    """Rebuild the posterior of each step by hand from the model's own layers and compare the KL."""
    torch.manual_seed(0)
    model = small()
    x = torch.rand(2, 1, 28, 28).bernoulli()
    noise = torch.randn(model.T, 2, model.latent_size)
    out = model(x, noise=noise)
    canvas, h_enc, c_enc, h_dec, c_dec = model.initial_state(2)
    enc, dec = (h_enc, c_enc), (h_dec, c_dec)
    for t in range(model.T):
        r, _ = model.attention.read(x, x - torch.sigmoid(canvas), dec[0])
        enc = model.encoder(torch.cat([r, dec[0]], 1), enc)
        mu, log_sigma = model.posterior(enc[0]).chunk(2, -1)
        q = torch.distributions.Normal(mu, log_sigma.exp())
        kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
        torch.testing.assert_close(out.kl[:, t], kl, rtol=1e-5, atol=1e-5)
        dec = model.decoder(mu + log_sigma.exp() * noise[t], dec)
        canvas = canvas + model.attention.write(dec[0])[0]
    torch.testing.assert_close(out.canvas_logits, canvas)


@pytest.mark.parametrize("attention", ["none", "gaussian"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 20, 30)])
def test_shapes_for_one_and_three_channels_and_non_square_images(attention, shape):
    model = small(shape, attention)
    out = model(torch.rand(2, *shape), return_steps=True)
    assert out.canvas_logits.shape == (2, *shape)
    assert out.kl.shape == (2, 3)
    assert out.canvases.shape == (3, 2, *shape)
    if attention == "gaussian":
        assert out.read_params.gx.shape == (3, 2) and out.write_params.gamma.shape == (3, 2)
    else:
        assert out.read_params is None
    samples = model.sample(5)
    assert samples.shape == (3, 5, *shape)
    assert samples.min() >= 0 and samples.max() <= 1


@pytest.mark.parametrize("attention", ["none", "gaussian"])
def test_gradients_reach_every_parameter(attention):
    model = small((3, 20, 30), attention)
    x = torch.rand(4, 3, 20, 30).bernoulli()
    out = model(x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out.canvas_logits, x) + out.kl.sum()
    loss.backward()
    names = [n for n, _ in model.named_parameters()]
    for required in ("canvas0", "h_enc0", "c_enc0", "h_dec0", "c_dec0"):
        assert required in names
    if attention == "gaussian":
        assert {"attention.read_head.weight", "attention.write_head.weight", "attention.write_patch.weight"} <= set(
            names
        )
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_fresh_noise_each_step_and_fixed_noise_reproduces():
    model = small()
    x = torch.rand(2, 1, 28, 28)
    a, b = model(x), model(x)
    assert not torch.equal(a.canvas_logits, b.canvas_logits)  # z_t is resampled every call
    noise = torch.randn(3, 2, 4)
    torch.testing.assert_close(model(x, noise=noise).canvas_logits, model(x, noise=noise).canvas_logits)
    torch.manual_seed(7)
    s1 = model.sample(3)
    torch.manual_seed(7)
    torch.testing.assert_close(s1, model.sample(3))


def test_generation_does_not_use_the_encoder():
    model = small()
    noise = torch.randn(3, 2, 4)
    before = model.sample(2, noise=noise)
    with torch.no_grad():
        for p in list(model.encoder.parameters()) + list(model.posterior.parameters()) + [model.h_enc0]:
            p.add_(1.0)
    torch.testing.assert_close(model.sample(2, noise=noise), before)


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"T": 0}, "T"),
        ({"latent_size": 0}, "latent_size"),
        ({"lstm_size": -3}, "lstm_size"),
        ({"read_size": 0}, "attention.read_size"),
        ({"write_size": 29}, "attention.write_size"),
        ({"attention_type": "spatial"}, "attention.type"),
    ],
)
def test_bad_sizes_name_the_key(kwargs, key):
    args = {
        "image_shape": (1, 28, 28),
        "T": 2,
        "latent_size": 2,
        "lstm_size": 4,
        "attention_type": "gaussian",
        "read_size": 2,
        "write_size": 5,
        **kwargs,
    }
    with pytest.raises(ConfigError, match=rf"^{key}="):
        DRAW(**args)
