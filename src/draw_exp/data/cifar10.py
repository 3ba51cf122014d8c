"""CIFAR-10 through torchvision: the paper's Figure 9 (32×32 colour images, 50,000 train and 10,000 test)."""

from __future__ import annotations

import torch
from torchvision.datasets import CIFAR10

from draw_exp.data.base import ImageDataModule
from draw_exp.errors import check_int_range


class UnverifiedCIFAR10(CIFAR10):
    """torchvision's reader without its md5 checks (``data.verify=false``: files written elsewhere in CIFAR-10's
    format, such as the tests'). The batches are Python pickles, so an unverified file must come from a source
    you trust."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        self.classes, self.class_to_idx = [], {}  # the class names are not used: generation ignores labels


class CIFAR10DataModule(ImageDataModule):
    """torchvision's CIFAR-10, ``cifar-10-batches-py/`` under ``data_dir``. Validation (``val_size`` images) is held
    out of the 50,000 training images with a fixed seed; the 10,000 test images are the test set."""

    image_shape = (3, 32, 32)
    default_likelihood = "discretized_logistic"

    def __init__(self, val_size: int = 5000, verify: bool = True, **kwargs):
        kwargs.setdefault("binarize", "none")
        super().__init__(**kwargs)
        self.val_size = check_int_range("data.val_size", val_size, 1)  # the upper bound: when the file is read
        self.verify = verify

    name = "CIFAR-10"
    source = "torchvision's CIFAR-10, the python version (cifar-10-python.tar.gz)"
    subfolder = CIFAR10.base_folder

    def expected_files(self) -> list[str]:
        return [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]

    def fetch(self) -> None:
        CIFAR10(self.data_dir, train=True, download=True)

    def _read(self, train: bool) -> torch.Tensor:
        self.require_files()
        reader = CIFAR10 if self.verify else UnverifiedCIFAR10
        try:
            data = reader(self.data_dir, train=train, download=False).data  # [N, 32, 32, 3] uint8
        except Exception as err:  # torchvision: RuntimeError on an md5 mismatch; pickle and numpy errors on damage
            raise OSError(
                f"could not read CIFAR-10's {'training' if train else 'test'} batches in {self.folder}: "
                f"{err}. Delete the folder and download again (data.download=true), or copy intact "
                "files there."
            ) from err
        return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()

    def load_splits(self) -> dict[str, torch.Tensor]:
        train, val = self.random_split(self._read(train=True), self.val_size)
        return {"train": train, "val": val, "test": self._read(train=False)}
