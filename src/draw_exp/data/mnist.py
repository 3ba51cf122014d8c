"""MNIST through torchvision, binarised on the fly (the paper's MNIST rows use binarised digits)."""

from __future__ import annotations

import torch
from torchvision.datasets import MNIST

from draw_exp.data.base import ImageDataModule
from draw_exp.errors import check_int_range

# torchvision reads the unpacked IDX files; the .gz archives may sit beside them.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MNISTDataModule(ImageDataModule):
    """torchvision's MNIST: 55,000 / 5,000 train / validation from its training file, 10,000 test.

    ``data_dir`` is the folder that holds ``MNIST/raw/`` (torchvision's layout).
    """

    image_shape = (1, 28, 28)

    def __init__(self, val_size: int = 5000, **kwargs):
        super().__init__(**kwargs)
        # the upper bound (the training file's size) is checked when the file is read
        self.val_size = check_int_range("data.val_size", val_size, 1)

    name = "MNIST"
    source = "torchvision's mirrors, IDX layout"

    subfolder = "MNIST/raw"

    def expected_files(self) -> list[str]:
        return [f for files in FILES.values() for f in files]

    def fetch(self) -> None:
        for train in (True, False):
            MNIST(self.data_dir, train=train, download=True)

    def read_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """MNIST's ``train`` or ``test`` file: uint8 images ``[N, 1, 28, 28]`` and int64 labels ``[N]``."""
        self.require_files()
        try:
            dataset = MNIST(self.data_dir, train=split == "train", download=False)
        except Exception as err:  # torchvision's reader fails in several ways on a damaged file
            raise OSError(
                f"could not read MNIST's {split} files {' and '.join(FILES[split])} in {self.folder}: "
                f"{err}. They look truncated or corrupt: delete them and download again, or copy intact ones."
            ) from err
        return dataset.data.unsqueeze(1), dataset.targets

    def load_labelled_splits(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Images and labels of ``train``, ``val`` and ``test``; validation is held out of the training file."""
        images, labels = {}, {}
        for split in FILES:
            images[split], labels[split] = self.read_split(split)
        # random_split draws the same permutation each call, so images and labels stay aligned.
        images["train"], images["val"] = self.random_split(images["train"], self.val_size)
        labels["train"], labels["val"] = self.random_split(labels["train"], self.val_size)
        return images, labels

    def load_splits(self) -> dict[str, torch.Tensor]:
        return self.load_labelled_splits()[0]
