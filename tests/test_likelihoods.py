"""Observation models, against hand computations in nats."""

import math

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
    torch.testing.assert_close(bernoulli_nll(torch.zeros(1, 1, 28, 28), x[:1, :1, :, :].new_ones(1, 1, 28, 28)),
                               torch.tensor([784 * math.log(2)]))


def test_bernoulli_sums_to_one_over_every_binary_image():
    """Enumerate all 2^4 images of a 2×2 canvas: the probabilities exp(−nll) sum to 1."""
    logits = torch.randn(1, 1, 2, 2, dtype=torch.float64) * 3
    images = torch.tensor([[(k >> i) & 1 for i in range(4)] for k in range(16)], dtype=torch.float64).view(16, 1, 2, 2)
    total = torch.exp(-bernoulli_nll(logits.expand(16, 1, 2, 2), images)).sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))
