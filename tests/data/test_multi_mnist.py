"""Images composed of MNIST digits: two-digit MNIST (generation) and cluttered MNIST (classification)."""

import numpy as np
import pytest
import torch

from draw_exp.data import ClutteredMNISTDataModule, TwoDigitMNISTDataModule
from draw_exp.data.multi_mnist import clutter, compose_digits, paste_max
from draw_exp.errors import ConfigError


def squares(values) -> torch.Tensor:
    """Digits that fill their whole 28×28 square with one value each: clipping would show as missing pixels."""
    return torch.tensor(values, dtype=torch.uint8)[:, None, None, None].expand(-1, 1, 28, 28).contiguous()


def test_paste_max_keeps_the_brighter_pixel_where_patches_overlap():
    canvas = np.zeros((1, 5, 5), np.uint8)
    paste_max(canvas, np.full((1, 3, 3), 100, np.uint8), np.array([0]), np.array([0]))
    paste_max(canvas, np.full((1, 3, 3), 50, np.uint8), np.array([1]), np.array([1]))
    expected = np.zeros((5, 5), np.uint8)
    expected[1:4, 1:4] = 50
    expected[0:3, 0:3] = 100
    np.testing.assert_array_equal(canvas[0], expected)


def test_each_digit_lies_wholly_inside_the_canvas():
    images = compose_digits(squares([255]), 500, 1, 60, np.random.default_rng(0))
    assert images.shape == (500, 1, 60, 60)
    lit = images[:, 0] > 0
    assert (lit.sum((1, 2)) == 28 * 28).all()  # never clipped
    rows, cols = lit.any(2), lit.any(1)
    assert (rows.sum(1) == 28).all() and (cols.sum(1) == 28).all()  # one whole square
    # positions cover the canvas: some squares touch each border
    assert rows[:, 0].any() and rows[:, -1].any() and cols[:, 0].any() and cols[:, -1].any()


def test_two_digits_per_image_from_the_split_and_seeded():
    digits = squares([10, 20, 30])
    a = compose_digits(digits, 200, 2, 60, np.random.default_rng(1))
    b = compose_digits(digits, 200, 2, 60, np.random.default_rng(1))
    c = compose_digits(digits, 200, 2, 60, np.random.default_rng(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    lit = (a[:, 0] > 0).sum((1, 2))
    assert (lit >= 28 * 28).all() and (lit <= 2 * 28 * 28).all() and (lit > 28 * 28).any()
    assert set(a.unique().tolist()) <= {0, 10, 20, 30}


def test_clutter_keeps_the_images_digit_whole_and_cuts_pieces_from_other_digits():
    # Digit 0 is dimmer than digit 1: image 1's digit stays whole under max; image 0's pieces all come from digit 1.
    digits = squares([10, 20])
    images = clutter(digits, 100, 8, 8, np.random.default_rng(0))
    assert images.shape == (2, 1, 100, 100)
    own = images[1, 0]
    assert int((own == 20).sum()) == 28 * 28 and set(own.unique().tolist()) <= {0, 10, 20}
    pieces = images[0, 0] == 20
    assert 0 < int(pieces.sum()) <= 8 * 8 * 8
    assert int((images[0, 0] >= 10).sum()) >= 28 * 28
    bare = clutter(digits, 100, 0, 8, np.random.default_rng(0))
    assert int((bare[0, 0] > 0).sum()) == 28 * 28  # no distractors: the digit alone


def two_digits(mnist_dir):
    settings = {"val_size": 50, "train_images": 40, "val_images": 20, "test_images": 30, "binarize": "none"}
    return TwoDigitMNISTDataModule(data_dir=str(mnist_dir), num_workers=0, download=False, **settings)


def test_two_digit_module_composes_each_split_from_its_own_digits(mnist_dir):
    dm = two_digits(mnist_dir)
    assert dm.image_shape == (1, 60, 60)
    dm.setup()
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [40, 20, 30]
    image, index = dm.datasets["test"][3]
    assert image.shape == (1, 60, 60) and index == 3
    again = two_digits(mnist_dir)
    again.setup()
    assert torch.equal(dm.datasets["test"].images, again.datasets["test"].images)  # a fixed test set
    assert not torch.equal(dm.datasets["train"].images[:20], dm.datasets["val"].images)


def test_cluttered_module_serves_images_with_their_digits_labels(mnist_dir):
    from torchvision.datasets import MNIST

    dm = ClutteredMNISTDataModule(data_dir=str(mnist_dir), val_size=50, num_workers=0, download=False)
    assert dm.image_shape == (1, 100, 100)
    dm.setup()
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [150, 50, 100]
    image, label = dm.datasets["test"][7]
    assert image.shape == (1, 100, 100) and 0 <= image.min() and image.max() <= 1
    assert label == int(MNIST(str(mnist_dir), train=False).targets[7])  # test images keep MNIST's order
    # validation labels follow the same held-out digits as validation images
    train_digits, train_labels = dm.read_split("train")
    _, val_digits = dm.random_split(train_digits, 50)
    _, val_labels = dm.random_split(train_labels, 50)
    val = dm.datasets["val"]
    for i in (0, 13, 49):
        assert val[i][1] == val_labels[i]
        assert int(val.images[i].float().sum()) >= int(val_digits[i].float().sum())  # its digit is in the image


@pytest.mark.parametrize(
    "kwargs, key",
    [({"side": 20}, "data.side"), ({"distractors": -1}, "data.distractors"), ({"patch": 29}, "data.patch")],
)
def test_bad_cluttered_settings_name_the_key(tmp_path, kwargs, key):
    with pytest.raises(ConfigError, match=rf"^{key}="):
        ClutteredMNISTDataModule(data_dir=str(tmp_path), **kwargs)


def test_bad_two_digit_settings_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.side="):
        TwoDigitMNISTDataModule(data_dir=str(tmp_path), side=27)
    with pytest.raises(ConfigError, match=r"^data\.test_images="):
        TwoDigitMNISTDataModule(data_dir=str(tmp_path), test_images=0)
