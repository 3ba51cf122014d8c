"""Observation models, against hand computations in nats."""

import math

import mpmath
import pytest
import torch

from draw_exp.likelihoods import bernoulli_nll


def test_bernoulli_nll_is_the_hand_computed_log_likelihood_in_nats():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 30.0]]]])  # one image, 2×2
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    p = [1 / (1 + math.exp(-v)) for v in (0.0, 2.0, -1.0, 30.0)]
    expected = -(math.log(p[0]) + math.log(1 - p[1]) + math.log(1 - p[2]) + math.log(p[3]))
    torch.testing.assert_close(bernoulli_nll(logits, x), torch.tensor([expected]))


def test_bernoulli_nll_sums_over_pixels_per_image():
    logits, x = torch.randn(3, 2, 5, 4), torch.rand(3, 2, 5, 4).bernoulli()
    nll = bernoulli_nll(logits, x)
    assert nll.shape == (3,)
    torch.testing.assert_close(nll[1], bernoulli_nll(logits[1:2], x[1:2])[0])
    # uniform logits: exactly log 2 per pixel
    torch.testing.assert_close(
        bernoulli_nll(torch.zeros(1, 1, 28, 28), x[:1, :1, :, :].new_ones(1, 1, 28, 28)),
        torch.tensor([784 * math.log(2)]),
    )


def test_bernoulli_sums_to_one_over_every_binary_image():
    """Enumerate all 2^4 images of a 2×2 canvas: the probabilities exp(−nll) sum to 1."""
    logits = torch.randn(1, 1, 2, 2, dtype=torch.float64) * 3
    images = torch.tensor([[(k >> i) & 1 for i in range(4)] for k in range(16)], dtype=torch.float64).view(16, 1, 2, 2)
    total = torch.exp(-bernoulli_nll(logits.expand(16, 1, 2, 2), images)).sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


# --- discretized logistic -------------------------------------------------------------------------------------

from draw_exp.likelihoods import DiscretizedLogistic, discretized_logistic_log_prob  # noqa: E402


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


@pytest.mark.parametrize("mean", [0.0, 0.003, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("scale", [1e-3, 0.01, 0.1, 1.0, 10.0])
def test_discretized_logistic_sums_to_one_over_the_256_bins(mean, scale):
    x = torch.arange(256, dtype=torch.float64) / 255
    log_p = discretized_logistic_log_prob(
        x, torch.tensor(mean, dtype=torch.float64), torch.tensor(math.log(scale), dtype=torch.float64)
    )
    torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-9)


def test_discretized_logistic_values_against_a_hand_computation():
    mean, scale = 0.4, 0.05
    for k in (0, 1, 100, 102, 254, 255):
        upper = sigmoid((k / 255 + 0.5 / 255 - mean) / scale) if k < 255 else 1.0
        lower = sigmoid((k / 255 - 0.5 / 255 - mean) / scale) if k > 0 else 0.0
        got = discretized_logistic_log_prob(
            torch.tensor(k / 255, dtype=torch.float64),
            torch.tensor(mean, dtype=torch.float64),
            torch.tensor(math.log(scale), dtype=torch.float64),
        )
        assert got.item() == pytest.approx(math.log(upper - lower), rel=1e-9)


def test_discretized_logistic_is_accurate_where_a_naive_difference_cancels():
    # far into the tail, σ(a) − σ(b) is 1 − 1 in float32; the stable form still gives the right log-probability
    x, mean, log_scale = torch.tensor([0.5]), torch.tensor([0.0]), torch.tensor([math.log(0.01)])
    got = discretized_logistic_log_prob(x, mean, log_scale).item()
    mpmath.mp.dps = 50
    a, b = mpmath.mpf(0.5 + 0.5 / 255) / mpmath.mpf(0.01), mpmath.mpf(0.5 - 0.5 / 255) / mpmath.mpf(0.01)
    exact = float(mpmath.log(1 / (1 + mpmath.exp(-a)) - 1 / (1 + mpmath.exp(-b))))
    naive = torch.sigmoid(torch.tensor(float(a))) - torch.sigmoid(torch.tensor(float(b)))
    assert naive == 0  # float32 cannot tell the two apart
    assert math.isfinite(got) and got == pytest.approx(exact, rel=1e-4)


def test_discretized_logistic_gradients_are_finite_at_the_edge_bins():
    likelihood = DiscretizedLogistic(channels=3)
    logits = torch.tensor([-30.0, 0.0, 30.0]).view(1, 3, 1, 1).repeat(2, 1, 1, 1).requires_grad_()
    x = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    nll = likelihood.nll(logits, x).sum()
    nll.backward()
    assert torch.isfinite(nll)
    assert torch.isfinite(logits.grad).all() and torch.isfinite(likelihood.log_scale.grad).all()


def test_discretized_logistic_nll_sums_over_pixels_and_channels():
    likelihood = DiscretizedLogistic(channels=3)
    logits, x = torch.randn(4, 3, 5, 6), torch.randint(0, 256, (4, 3, 5, 6)) / 255
    nll = likelihood.nll(logits, x)
    per_element = -discretized_logistic_log_prob(x, torch.sigmoid(logits), likelihood.log_scale)
    assert nll.shape == (4,)
    torch.testing.assert_close(nll, per_element.sum((1, 2, 3)))
