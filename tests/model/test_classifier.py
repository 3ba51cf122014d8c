"""The attention classifier (the paper's section 4.1): its glimpse is DRAW's Gaussian read of the image alone."""

import pytest
import torch

from draw_exp.errors import ConfigError
from draw_exp.model.attention import GaussianAttention
from draw_exp.model.classifier import AttentionClassifier


def test_glimpse_is_gamma_times_the_filtered_sum_over_the_image():
    torch.manual_seed(0)
    model = AttentionClassifier((2, 9, 11), T=3, lstm_size=8, read_size=3)
    x, h = torch.rand(2, 2, 9, 11, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    model.double()
    glimpse, params = model.read(x, h)
    # F[i, a] ∝ exp(−(a − μ_i)² / 2σ²), μ_i = g + (i − N/2 − 0.5)δ, normalised over a; r = γ Σ_h Σ_w F_Y x F_X
    for b in range(2):

        def bank(centre, delta, sigma2, length):
            mu = centre + (torch.arange(1, 4, dtype=torch.float64) - 1.5 - 0.5) * delta
            f = torch.exp(-((torch.arange(1, length + 1, dtype=torch.float64) - mu[:, None]) ** 2) / (2 * sigma2))
            return f / f.sum(1, keepdim=True)

        fx = bank(params.gx[b], params.delta[b], params.sigma2[b], 11)
        fy = bank(params.gy[b], params.delta[b], params.sigma2[b], 9)
        expected = torch.stack(
            [
                params.gamma[b]
                * torch.stack(
                    [
                        torch.stack(
                            [
                                sum(fy[i, hh] * x[b, c, hh, w] * fx[j, w] for hh in range(9) for w in range(11))
                                for j in range(3)
                            ]
                        )
                        for i in range(3)
                    ]
                )
                for c in range(2)
            ]
        )
        torch.testing.assert_close(glimpse[b], expected.flatten())


def test_window_parameters_are_draws_read_window():
    torch.manual_seed(0)
    model = AttentionClassifier((1, 20, 30), T=2, lstm_size=8, read_size=4)
    draw_attention = GaussianAttention((1, 20, 30), 8, read_size=4, write_size=2)
    draw_attention.read_head.load_state_dict(model.read_head.state_dict())
    h = torch.randn(5, 8)
    _, ours = model.read(torch.rand(5, 1, 20, 30), h)
    _, draws = draw_attention.read(torch.rand(5, 1, 20, 30), torch.rand(5, 1, 20, 30), h)
    for a, b in zip(ours, draws, strict=True):
        torch.testing.assert_close(a, b)


def test_each_glimpse_is_placed_by_the_previous_state():
    torch.manual_seed(0)
    model = AttentionClassifier((1, 16, 16), T=4, lstm_size=8, read_size=3)
    out = model(torch.rand(3, 1, 16, 16))
    assert out.logits.shape == (3, 10) and out.glimpses.gx.shape == (4, 3)
    torch.testing.assert_close(out.glimpses.gx[0], out.glimpses.gx[0, :1].expand(3))  # h_0 is learned, shared
    assert not torch.allclose(out.glimpses.gx[1], out.glimpses.gx[1, :1].expand(3))  # then each image its own


def test_learns_to_classify_where_the_class_is_only_seen_through_glimpses():
    # Class 1: a bright bar in the top-left quarter; class 0: in the bottom-right. Overfits 32 images.
    torch.manual_seed(0)
    x, labels = torch.zeros(32, 1, 16, 16), torch.arange(32) % 2
    for i in range(32):
        r = 2 if labels[i] else 10
        x[i, 0, r : r + 4, r : r + 2] = 1
    model = AttentionClassifier((1, 16, 16), T=2, lstm_size=16, read_size=4, classes=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x).logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.05
    assert (model(x).logits.argmax(1) == labels).all()


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"T": 0}, "T"),
        ({"read_size": 17}, "attention.read_size"),
        ({"lstm_size": 0}, "lstm_size"),
        ({"classes": 1}, "classes"),
    ],
)
def test_bad_sizes_name_the_key(kwargs, key):
    args = {"image_shape": (1, 16, 16), "T": 2, "lstm_size": 8, "read_size": 4, **kwargs}
    with pytest.raises(ConfigError, match=rf"^{key}="):
        AttentionClassifier(**args)
