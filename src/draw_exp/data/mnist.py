"""MNIST through torchvision, binarised on the fly (the paper's MNIST rows use binarised digits)."""

from __future__ import annotations

import os

import torch
from torchvision.datasets import MNIST

from draw_exp.data.base import ImageDataModule

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
        self.val_size = val_size

    @property
    def raw_folder(self) -> str:
        return os.path.abspath(os.path.join(self.data_dir, "MNIST", "raw"))

    def missing_files(self) -> list[str]:
        return [f for files in FILES.values() for f in files if not os.path.isfile(os.path.join(self.raw_folder, f))]

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node: the only place that downloads.
        if self.missing_files() and self.download:
            try:
                for train in (True, False):
                    MNIST(self.data_dir, train=train, download=True)
            except (RuntimeError, OSError) as err:
                raise FileNotFoundError(self._missing_message(f" Downloading failed: {err}")) from err
        if self.missing_files():
            raise FileNotFoundError(self._missing_message(" Set data.download=true where a network is available."))

    def _missing_message(self, how: str) -> str:
        return (
            f"MNIST files missing in {self.raw_folder}: {', '.join(self.missing_files())} "
            f"(expected {', '.join(f for files in FILES.values() for f in files)}, torchvision's IDX layout). "
            f"paths.data_dir, or $DRAW_DATA_DIR, names the folder that holds MNIST/.{how}"
        )

    def load_splits(self) -> dict[str, torch.Tensor]:
        if self.missing_files():
            raise FileNotFoundError(self._missing_message(" Run prepare_data() first, or copy the files there."))
        images = {}
        for split in FILES:
            try:
                images[split] = MNIST(self.data_dir, train=split == "train", download=False).data.unsqueeze(1)
            except Exception as err:  # torchvision's reader fails in several ways on a damaged file
                raise OSError(
                    f"could not read MNIST's {split} files {' and '.join(FILES[split])} in {self.raw_folder}: "
                    f"{err}. They look truncated or corrupt: delete them and download again, or copy intact ones."
                ) from err
        images["train"], images["val"] = self.random_split(images["train"], self.val_size)
        return images
