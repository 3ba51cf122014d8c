"""Likelihood bounds: the ELBO and the importance-weighted bound, against each other and an exact likelihood."""

import math

import pytest
import torch

from draw_exp.evaluation import elbo_bound, importance_weighted_bound, summarise
from draw_exp.lit_module import DrawModule


def module(**kw):
    args = {
        "image_shape": (1, 6, 6),
        "T": 2,
        "latent_size": 3,
        "lstm_size": 8,
        "attention": {"type": "none"},
        "engine": "fused_loop",
    }
    return DrawModule(**{**args, **kw}).eval()


def trained_module(steps=150):
    torch.manual_seed(0)
    m = DrawModule(
        image_shape=(1, 6, 6),
        T=3,
        latent_size=4,
        lstm_size=16,
        attention={"type": "none"},
        lr=1e-2,
        engine="fused_loop",
    )
    x = (torch.rand(64, 1, 6, 6) < torch.linspace(0.1, 0.9, 36).view(1, 1, 6, 6)).float()
    optimiser = m.configure_optimizers()
    for _ in range(steps):
        loss = m.loss_terms(x)["loss"].mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return m.eval(), x


def test_one_sample_bound_is_the_elbo_estimator_in_distribution():
    torch.manual_seed(0)
    m = module()
    x = torch.rand(1, 1, 6, 6).bernoulli().expand(4000, 1, 6, 6)
    elbo, elbo_se = summarise(elbo_bound(m, x))
    iw, iw_se = summarise(importance_weighted_bound(m, x, k=1))
    assert abs(elbo - iw) < 3 * math.hypot(elbo_se, iw_se), (elbo, iw, elbo_se, iw_se)


def test_more_samples_tighten_the_bound_on_a_trained_model():
    m, x = trained_module()
    torch.manual_seed(1)
    images = x[:32]
    elbo = torch.stack([elbo_bound(m, images) for _ in range(20)]).mean().item()
    iw = {k: importance_weighted_bound(m, images, k).mean().item() for k in (1, 10, 100)}
    assert iw[100] < iw[10] < elbo, (elbo, iw)
    assert elbo - iw[100] > 0.05  # the gap is real, not noise


def exact_nll(m: DrawModule, x: torch.Tensor) -> torch.Tensor:
    """−log p(x) for T = 1 and one latent dimension: p(x) = ∫ N(z; 0, 1) p(x | z) dz by the trapezoid rule."""
    model = m.model
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    with torch.no_grad():
        model.double()
        state = model.initial_state(len(z))
        h, _ = model.decoder(z[:, None], (state.h_dec, state.c_dec))
        logits = model.canvas0 + model.attention.write(h)[0]  # [Z, 1, 1, 2]
        log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        out = []
        for image in x.double():
            log_joint = log_prior + m.likelihood.nll(logits, image.expand_as(logits)).neg()
            out.append(-torch.log(torch.trapezoid(log_joint.exp(), z)))
        model.float()
    return torch.stack(out)


def test_bounds_bracket_an_exact_likelihood():
    torch.manual_seed(3)
    m = DrawModule(
        image_shape=(1, 1, 2), T=1, latent_size=1, lstm_size=4, attention={"type": "none"}, engine="fused_loop"
    )
    images = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).view(4, 1, 1, 2)
    exact = exact_nll(m, images)
    assert torch.exp(-exact).sum().item() == pytest.approx(1.0, abs=1e-6)  # a distribution over the 4 images
    m.eval()
    torch.manual_seed(4)
    many = images.repeat_interleave(2000, 0)
    elbo = elbo_bound(m, many).view(4, 2000).mean(1)
    iw = importance_weighted_bound(m, images, k=20_000)
    for i in range(4):
        assert elbo[i] >= exact[i] - 0.01  # the ELBO is a bound
        assert elbo[i] >= iw[i] - 0.01
        assert iw[i] == pytest.approx(exact[i].item(), abs=0.03)  # and K = 20,000 (in chunks) all but closes it
    assert (elbo - exact).min() > 0.1  # the ELBO's gap is real, so the test can tell the bounds apart
