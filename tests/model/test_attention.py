"""The read and write operations, against the formulas of the paper's section 3."""

import math

import pytest
import torch

from draw_exp.model.attention import AttentionParams, GaussianAttention, NoAttention, filterbank, glimpse, scatter

pytestmark = pytest.mark.usefixtures("float64")  # exact comparisons (tests/conftest.py)


def direct_filterbank(center, delta, sigma2, N, length):
    """Element by element: F[i, a] = exp(-(a - μ_i)² / 2σ²) / Σ_a' exp(-(a' - μ_i)² / 2σ²), a = 1..length."""
    rows = []
    for i in range(1, N + 1):
        mu = center + (i - N / 2 - 0.5) * delta
        w = [math.exp(-((a - mu) ** 2) / (2 * sigma2)) for a in range(1, length + 1)]
        rows.append([v / sum(w) for v in w])
    return torch.tensor(rows)


@pytest.mark.parametrize("N,length", [(1, 7), (2, 28), (5, 20), (12, 32)])
def test_filterbank_matches_direct_evaluation(N, length):
    center, delta, sigma2 = torch.tensor([10.3, 4.0]), torch.tensor([2.1, 0.7]), torch.tensor([1.7, 3.2])
    fb = filterbank(center, delta, sigma2, N, length)
    assert fb.shape == (2, N, length)
    for b in range(2):
        expected = direct_filterbank(center[b].item(), delta[b].item(), sigma2[b].item(), N, length)
        torch.testing.assert_close(fb[b], expected, rtol=1e-10, atol=1e-12)


def test_filterbank_rows_sum_to_one_even_far_outside_the_image():
    center = torch.tensor([14.0, -300.0, 500.0])
    fb = filterbank(center, torch.ones(3), torch.full((3,), 0.01), 4, 28)
    torch.testing.assert_close(fb.sum(-1), torch.ones(3, 4))


def test_attention_params_follow_equations_21_to_24():
    att = GaussianAttention((1, 20, 30), lstm_size=3, read_size=4, write_size=5)
    head = torch.tensor([[0.2, -0.4, math.log(2.0), math.log(0.5), math.log(3.0)]])
    p = att.attention_params(head, grid_size=4)
    # A = width = 30, B = height = 20
    torch.testing.assert_close(p.gx, torch.tensor([(30 + 1) / 2 * 1.2]))
    torch.testing.assert_close(p.gy, torch.tensor([(20 + 1) / 2 * 0.6]))
    torch.testing.assert_close(p.delta, torch.tensor([(30 - 1) / (4 - 1) * 0.5]))
    torch.testing.assert_close(p.sigma2, torch.tensor([2.0]))
    torch.testing.assert_close(p.gamma, torch.tensor([3.0]))


def test_glimpse_on_a_known_region_returns_its_weighted_mean():
    # An image constant (=v) on a block, zero elsewhere: a 1×1 glimpse centred on the block with narrow
    # filters sees v; a glimpse centred far from it sees 0.
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 9:14, 4:9] = 0.75  # rows 10..14, columns 5..9 in 1-based pixel coordinates
    on = filterbank(torch.tensor([7.0]), torch.ones(1), torch.tensor([0.3]), 1, 28)
    on_y = filterbank(torch.tensor([12.0]), torch.ones(1), torch.tensor([0.3]), 1, 28)
    torch.testing.assert_close(glimpse(image, on, on_y), torch.full((1, 1, 1, 1), 0.75), atol=1e-6, rtol=0)
    off = filterbank(torch.tensor([24.0]), torch.ones(1), torch.tensor([0.3]), 1, 28)
    assert glimpse(image, off, on_y).abs().max() < 1e-12
    # A wide filter sees the weighted mean: Σ_ab F_y[b] F_x[a] image[b, a].
    fx = filterbank(torch.tensor([8.0]), torch.ones(1), torch.tensor([4.0]), 1, 28)
    fy = filterbank(torch.tensor([11.0]), torch.ones(1), torch.tensor([4.0]), 1, 28)
    expected = sum(fy[0, 0, b] * fx[0, 0, a] * image[0, 0, b, a] for b in range(28) for a in range(28))
    torch.testing.assert_close(glimpse(image, fx, fy)[0, 0, 0, 0], expected)


@pytest.mark.parametrize("shape,N", [((1, 28, 28), 5), ((3, 32, 32), 12), ((1, 20, 30), 3)])
def test_write_is_the_adjoint_of_read(shape, N):
    gen = torch.Generator().manual_seed(0)
    B = 3
    C, H, W = shape
    params = AttentionParams(
        gx=torch.rand(B, generator=gen) * W,
        gy=torch.rand(B, generator=gen) * H,
        delta=torch.rand(B, generator=gen) * 3 + 0.2,
        sigma2=torch.rand(B, generator=gen) + 0.3,
        gamma=torch.ones(B),
    )
    att = GaussianAttention(shape, lstm_size=4, read_size=N, write_size=N)
    fx, fy = att.filterbanks(params, N)
    x = torch.randn(B, C, H, W, generator=gen)
    w = torch.randn(B, C, N, N, generator=gen)
    lhs = (glimpse(x, fx, fy) * w).sum()
    rhs = (x * scatter(w, fx, fy)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_gaussian_read_scales_by_gamma_and_reads_x_and_error_image():
    att = GaussianAttention((3, 20, 30), lstm_size=6, read_size=4, write_size=5)
    h = torch.randn(2, 6)
    x, x_err = torch.rand(2, 3, 20, 30), torch.randn(2, 3, 20, 30)
    r, p = att.read(x, x_err, h)
    assert r.shape == (2, 2 * 3 * 4 * 4)
    fx, fy = att.filterbanks(p, 4)
    expected = torch.cat([glimpse(x, fx, fy), glimpse(x_err, fx, fy)], 1).flatten(1) * p.gamma[:, None]
    torch.testing.assert_close(r, expected)


def test_gaussian_write_places_the_patch_with_inverse_gamma():
    att = GaussianAttention((3, 20, 30), lstm_size=6, read_size=4, write_size=5)
    h = torch.randn(2, 6)
    canvas, p = att.write(h)
    assert canvas.shape == (2, 3, 20, 30)
    fx, fy = att.filterbanks(p, 5)
    patch = att.write_patch(h).view(2, 3, 5, 5)
    expected = scatter(patch, fx, fy) / p.gamma[:, None, None, None]
    torch.testing.assert_close(canvas, expected)
    # per channel: channel c of the canvas depends on channel c of the patch only
    torch.testing.assert_close(canvas[:, 1], (fy.transpose(1, 2) @ patch[:, 1] @ fx) / p.gamma[:, None, None])


def test_no_attention_reads_x_and_error_image_and_writes_the_reshaped_linear_output():
    att = NoAttention((3, 20, 30), lstm_size=6)
    x, x_err, h = torch.rand(2, 3, 20, 30), torch.randn(2, 3, 20, 30), torch.randn(2, 6)
    r, params = att.read(x, x_err, h)
    assert params is None
    torch.testing.assert_close(r, torch.cat([x.reshape(2, -1), x_err.reshape(2, -1)], 1))
    canvas, _ = att.write(h)
    torch.testing.assert_close(canvas, att.write_linear(h).reshape(2, 3, 20, 30))
