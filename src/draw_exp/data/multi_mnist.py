"""Images composed of MNIST digits, generated from the MNIST files and seeded (the same images on every run): the
paper's cluttered MNIST for classification (section 4.1, Table 1, after Mnih et al., 2014) and two-digit MNIST for
generation (section 4.2, Figure 7). Validation and test sets are fixed; the training images are composed anew each
epoch (``recompose_train``) from the same digits."""

from __future__ import annotations

import numpy as np
import torch

from draw_exp.data.base import ImageDataset, LabelledImageDataset
from draw_exp.data.mnist import MNISTDataModule
from draw_exp.errors import check_int_range

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}  # one random stream per split: the test set never moves


def composition_rng(split_seed: int, split: str, epoch: int = 0, compose_seed: int = 0) -> np.random.Generator:
    """The random stream that composes ``split``: its own for each split, so the test set never moves, and for
    each training epoch (epoch 0's is the one fixed sets use, so they do not change when recomposition is on).
    ``compose_seed`` moves the training streams only: another value gives training images no run with the first
    one saw (a model continued with ``init_from`` would otherwise meet its first run's images again, epoch by
    epoch); 0 keeps the streams every run before the key had."""
    if split == "train" and compose_seed:
        return np.random.default_rng([split_seed, SPLIT_STREAMS[split], epoch, compose_seed])
    return np.random.default_rng([split_seed, SPLIT_STREAMS[split]] + ([epoch] if epoch else []))


def paste_max(canvas: np.ndarray, patches: np.ndarray, tops: np.ndarray, lefts: np.ndarray) -> None:
    """Paste ``patches[i]`` ``[h, w]`` into ``canvas[i]`` at (``tops[i]``, ``lefts[i]``), in place, keeping the
    brighter pixel where strokes overlap (a digit drawn over another is not brighter than white)."""
    h, w = patches.shape[1:]
    for image, patch, top, left in zip(canvas, patches, tops, lefts, strict=True):
        window = image[top : top + h, left : left + w]
        np.maximum(window, patch, out=window)


def compose_digits(
    digits: torch.Tensor, count: int, digits_per_image: int, side: int, rng: np.random.Generator
) -> torch.Tensor:
    """``count`` images of ``side``×``side``, each of ``digits_per_image`` digits drawn uniformly from ``digits``
    (uint8 ``[N, 1, 28, 28]``) at uniform positions where the whole digit fits (no digit is clipped).
    Returns uint8 ``[count, 1, side, side]``."""
    source = digits[:, 0].numpy()
    digit_side = source.shape[-1]
    canvas = np.zeros((count, side, side), dtype=np.uint8)
    for _ in range(digits_per_image):
        chosen = rng.integers(0, len(source), count)
        tops, lefts = rng.integers(0, side - digit_side + 1, (2, count))
        paste_max(canvas, source[chosen], tops, lefts)
    return torch.from_numpy(canvas)[:, None]


class ComposedMNISTDataModule(MNISTDataModule):
    """Base of the data sets composed of MNIST digits (the splits of ``data=mnist``): subclasses say how a split's
    images are composed (:meth:`compose`). With ``recompose_train`` the training images are composed anew at the
    start of every epoch, from the same digits with the epoch's own seeded stream: new places and distractors each
    epoch, so a model cannot learn the training images by heart (with one fixed set the cluttered-MNIST classifier
    reached 2% training error against 8% on validation, docs/experiments.md), and a resumed run sees the images an
    uninterrupted one would. ``compose_seed`` (the run's ``seed`` in the configs) chooses the training images' streams:
    another seed, other training images. Validation and test sets never change."""

    def __init__(self, recompose_train: bool = True, compose_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.recompose_train = bool(recompose_train)
        self.compose_seed = check_int_range("data.compose_seed", compose_seed, 0)
        self.digits: dict[str, torch.Tensor] = {}  # uint8 [N, 1, 28, 28] per split
        self.labels: dict[str, torch.Tensor] = {}  # int64 [N] per split
        self.train_epoch = 0  # the epoch whose composition datasets["train"] holds

    def compose(self, split: str, rng: np.random.Generator) -> ImageDataset:
        """``split``'s data set, its images composed from ``self.digits[split]`` with ``rng``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.recompose_train and self.trainer is not None and not self.trainer.reload_dataloaders_every_n_epochs:
            # Lightning builds the training loader once unless told to build it again; each epoch's loader is
            # where the new composition is made (train_dataloader).
            self.trainer.reload_dataloaders_every_n_epochs = 1
        if self.datasets:
            return
        self.digits, self.labels = self.load_labelled_splits()
        self.datasets = {split: self.compose(split, self.rng(split)) for split in SPLIT_STREAMS}

    def rng(self, split: str, epoch: int = 0) -> np.random.Generator:
        return composition_rng(self.split_seed, split, epoch, self.compose_seed)

    def train_dataloader(self):
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        if self.recompose_train and epoch != self.train_epoch:
            self.datasets["train"] = self.compose("train", self.rng("train", epoch))
            self.train_epoch = epoch
        return super().train_dataloader()


class TwoDigitMNISTDataModule(ComposedMNISTDataModule):
    """Two MNIST digits at random places on a ``side``×``side`` canvas (60×60 in the paper), binarised like
    ``data=mnist``. Each split is composed of its own MNIST digits (train and validation from MNIST's split of the
    training file, test from its test file), ``train_images``/``val_images``/``test_images`` of them, seeded by
    ``split_seed``: the same validation and test images on every run. ``data_dir`` holds ``MNIST/raw/``."""

    def __init__(
        self, side: int = 60, train_images: int = 55_000, val_images: int = 5_000, test_images: int = 10_000, **kwargs
    ):
        super().__init__(**kwargs)
        self.side = check_int_range("data.side", side, 28, 1024, "the canvas must hold a whole 28×28 digit")
        self.image_shape = (1, self.side, self.side)
        self.counts = {
            "train": check_int_range("data.train_images", train_images, 1),
            "val": check_int_range("data.val_images", val_images, 1),
            "test": check_int_range("data.test_images", test_images, 1),
        }

    def compose(self, split: str, rng: np.random.Generator) -> ImageDataset:
        images = compose_digits(self.digits[split], self.counts[split], 2, self.side, rng)
        return ImageDataset(images, self.binarize, fixed_seed=self.binarisation_seed(split))


def clutter(digits: torch.Tensor, side: int, distractors: int, patch: int, rng: np.random.Generator) -> torch.Tensor:
    """Cluttered translated MNIST (Mnih et al., 2014): image ``i`` holds ``digits[i]`` (uint8 ``[N, 1, 28, 28]``)
    wholly inside a ``side``×``side`` canvas at a uniform position, and ``distractors`` ``patch``×``patch`` pieces,
    each cut at a uniform place from a uniformly chosen *other* digit of ``digits`` and put at a uniform position.
    Returns uint8 ``[N, 1, side, side]``."""
    source = digits[:, 0].numpy()
    count, digit_side = len(source), source.shape[-1]
    canvas = np.zeros((count, side, side), dtype=np.uint8)
    tops, lefts = rng.integers(0, side - digit_side + 1, (2, count))
    paste_max(canvas, source, tops, lefts)
    offsets = np.arange(patch)
    for _ in range(distractors):
        other = (np.arange(count) + rng.integers(1, count, count)) % count  # never the image's own digit
        cut_top, cut_left = rng.integers(0, digit_side - patch + 1, (2, count))
        pieces = source[
            other[:, None, None], (cut_top[:, None] + offsets)[:, :, None], (cut_left[:, None] + offsets)[:, None, :]
        ]  # [N, patch, patch]
        tops, lefts = rng.integers(0, side - patch + 1, (2, count))
        paste_max(canvas, pieces, tops, lefts)
    return torch.from_numpy(canvas)[:, None]


class ClutteredMNISTDataModule(ComposedMNISTDataModule):
    """100×100 cluttered translated MNIST, served as ``(image, label)`` intensities in [0, 1]: one image per digit of
    each split (55,000 / 5,000 / 10,000, the splits of ``data=mnist``), composed with a random stream of its own
    seeded by ``split_seed``, so the test set is fixed. ``data_dir`` holds ``MNIST/raw/``."""

    def __init__(self, side: int = 100, distractors: int = 8, patch: int = 8, **kwargs):
        kwargs.setdefault("binarize", "none")
        super().__init__(**kwargs)
        self.side = check_int_range("data.side", side, 28, 1024, "the canvas must hold a whole 28×28 digit")
        self.distractors = check_int_range("data.distractors", distractors, 0)
        self.patch = check_int_range("data.patch", patch, 1, 28, "a piece of a 28×28 digit")
        self.image_shape = (1, self.side, self.side)

    def compose(self, split: str, rng: np.random.Generator) -> LabelledImageDataset:
        images = clutter(self.digits[split], self.side, self.distractors, self.patch, rng)
        return LabelledImageDataset(
            images, self.labels[split], binarize=self.binarize, fixed_seed=self.binarisation_seed(split)
        )
