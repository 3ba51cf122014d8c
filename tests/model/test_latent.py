"""The posterior's KL to the standard-normal prior."""

import torch

from draw_exp.model import gaussian_kl


def test_step_kl_equals_torch_distributions_closed_form():
    mu, log_sigma = torch.randn(5, 7), torch.randn(5, 7) * 0.5
    q = torch.distributions.Normal(mu, log_sigma.exp())
    p = torch.distributions.Normal(torch.zeros(7), torch.ones(7))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, log_sigma), expected, rtol=1e-5, atol=1e-5)
    # Latent dimension first, as the batch-last recurrence holds it: the same numbers.
    torch.testing.assert_close(gaussian_kl(mu.t(), log_sigma.t(), dim=0), expected, rtol=1e-5, atol=1e-5)
