"""Pictures: the drawing animation, attention windows where the formulas put them, 1 and 3 channels."""

import pytest
import torch
from PIL import Image

from draw_exp.model import DRAW
from draw_exp.model.attention import AttentionParams
from draw_exp.pictures import WRITE_COLOUR, attention_box, drawing_frames, render_all


def test_attention_box_is_centred_on_g_with_side_n_delta():
    # centre (gx, gy) = (10, 7) in 1-based pixel centres, N = 5, δ = 2: side 10, centre at (9.5, 6.5) on the image
    assert attention_box(10.0, 7.0, 2.0, 5) == (4.5, 1.5, 14.5, 11.5)


def test_a_write_window_is_drawn_where_its_parameters_say():
    canvases = torch.zeros(1, 1, 1, 20, 30)
    params = AttentionParams(*(torch.tensor([[v]]) for v in (15.5, 10.5, 2.0, 1.0, 1.0)))  # box 10..20 × 5..15
    frame = drawing_frames(canvases, None, params, write_size=5, scale=1)[0]
    pixels = frame.load()
    pad = 2  # the tile's margin
    assert pixels[pad + 10, pad + 8] == WRITE_COLOUR  # left edge
    assert pixels[pad + 20, pad + 8] == WRITE_COLOUR  # right edge
    assert pixels[pad + 15, pad + 5] == WRITE_COLOUR  # top edge
    assert pixels[pad + 15, pad + 10] == (0, 0, 0)  # inside: the black canvas


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("attention", ["gaussian", "none"])
def test_render_all_writes_every_picture(shape, attention, tmp_path):
    model = DRAW(shape, T=5, latent_size=3, lstm_size=8, attention_type=attention, read_size=2, write_size=4)
    files = render_all(
        model,
        torch.rand(6, *shape),
        torch.randn(5, 9, 3),
        tmp_path,
        animated=4,
        strip_every=2,
        scale=2,
        recon_noise=torch.randn(5, 6, 3),
    )
    gif = Image.open(files["drawing_samples"])
    assert gif.n_frames == 5  # one frame per step
    side = 2 * (shape[1] * 2 + 2) + 2  # 4 images in a 2×2 tile, each enlarged twice, 2-pixel margins
    assert gif.size == (side, side)
    assert Image.open(files["drawing_reconstructions"]).n_frames == 5
    assert Image.open(files["samples"]).size[0] > shape[2] * 3
    assert (tmp_path / "kl_per_step.csv").read_text().count("\n") == 6
    for key in ("reconstructions", "drawing_samples_strip", "drawing_reconstructions_strip", "kl_per_step"):
        assert Image.open(files[key]).size[0] > 0
