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


def cluttered(mnist_dir, **kwargs):
    return ClutteredMNISTDataModule(data_dir=str(mnist_dir), val_size=50, num_workers=0, download=False, **kwargs)


class Epoch:
    """The little of a Trainer that a data module reads: the epoch, and whether loaders are built anew."""

    def __init__(self, epoch: int = 0):
        self.current_epoch, self.reload_dataloaders_every_n_epochs, self.world_size = epoch, 0, 1


def training_images_at(dm, epoch: int) -> torch.Tensor:
    dm.trainer.current_epoch = epoch
    return dm.train_dataloader().dataset.images


def test_training_images_are_composed_anew_each_epoch_from_the_same_digits(mnist_dir):
    dm = cluttered(mnist_dir)
    dm.trainer = Epoch()
    dm.setup()
    assert dm.trainer.reload_dataloaders_every_n_epochs == 1  # asked of Lightning: a loader each epoch
    val, test, labels = dm.datasets["val"].images, dm.datasets["test"].images, dm.datasets["train"].labels
    first, second = training_images_at(dm, 0), training_images_at(dm, 1)
    assert not torch.equal(first, second)
    assert torch.equal(dm.datasets["train"].labels, labels)  # image i still shows digit i
    # digit i is whole in both: at least its own ink (the distractors add, never remove)
    ink = dm.digits["train"].flatten(1).sum(1, dtype=torch.int64)
    assert (first.flatten(1).sum(1, dtype=torch.int64) >= ink).all()
    assert (second.flatten(1).sum(1, dtype=torch.int64) >= ink).all()
    assert torch.equal(dm.datasets["val"].images, val) and torch.equal(dm.datasets["test"].images, test)
    # epoch 0 is the fixed set of recompose_train=false, and epoch 1 is the same in another run (a resumed one)
    fixed = cluttered(mnist_dir, recompose_train=False)
    fixed.trainer = Epoch()
    fixed.setup()
    assert torch.equal(training_images_at(fixed, 1), first)
    assert fixed.trainer.reload_dataloaders_every_n_epochs == 0
    resumed = cluttered(mnist_dir)
    resumed.trainer = Epoch(1)
    resumed.setup()
    assert torch.equal(training_images_at(resumed, 1), second)


def test_another_compose_seed_gives_other_training_images_and_the_same_validation_and_test(mnist_dir):
    runs = {}
    for seed in (0, 7):
        dm = cluttered(mnist_dir, compose_seed=seed)
        dm.trainer = Epoch()
        dm.setup()
        runs[seed] = dm, [training_images_at(dm, epoch) for epoch in range(3)]
    (first, first_train), (other, other_train) = runs[0], runs[7]
    for split in ("val", "test"):
        assert torch.equal(first.datasets[split].images, other.datasets[split].images)
    # no epoch of the second run repeats an epoch of the first, and its own epochs differ from each other
    for mine in other_train:
        assert not any(torch.equal(mine, theirs) for theirs in first_train)
    assert not torch.equal(other_train[1], other_train[2])
    assert torch.equal(other.datasets["train"].labels, first.datasets["train"].labels)
    # 0 keeps the streams runs had before the key existed
    assert torch.equal(first_train[1], first.compose("train", np.random.default_rng([0, 0, 1])).images)
    with pytest.raises(ConfigError, match=r"^data\.compose_seed=-1"):
        cluttered(mnist_dir, compose_seed=-1)


def test_two_digit_training_images_are_composed_anew_each_epoch(mnist_dir):
    dm = two_digits(mnist_dir)
    dm.trainer = Epoch()
    dm.setup()
    test = dm.datasets["test"].images
    assert not torch.equal(training_images_at(dm, 0), training_images_at(dm, 1))
    assert torch.equal(dm.datasets["test"].images, test)


@pytest.mark.parametrize("recompose_train", [True, False])
def test_lightning_serves_a_new_composition_each_epoch_only_when_asked(mnist_dir, recompose_train):
    import pytorch_lightning as pl

    class InkPerEpoch(pl.LightningModule):
        """Adds up the training images' ink over each epoch: the same digits recomposed keep their own ink but not
        their distractors', so the totals differ between epochs exactly when the images do."""

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)
            self.ink: list[int] = []  # exact: a float sum would change with the shuffled order

        def on_train_epoch_start(self):
            self.ink.append(0)

        def training_step(self, batch, _):
            self.ink[-1] += int((batch[0].double() * 255).round().sum())
            return self.layer(batch[0].mean((1, 2, 3))[:, None]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    module = InkPerEpoch()
    trainer = pl.Trainer(
        max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0
    )
    trainer.fit(module, datamodule=cluttered(mnist_dir, recompose_train=recompose_train, batch_size=50))
    assert len(module.ink) == 3
    assert (len(set(module.ink)) == 3) == recompose_train
