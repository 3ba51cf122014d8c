"""The fixed binarisation of MNIST by Larochelle & Murray (2011): the benchmark of DRAW's Table 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.utils import download_url

from draw_exp.data.base import ImageDataModule
from draw_exp.data.files import cache_path, load_or_build, md5

URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
SPLITS = {  # split -> (file, images, md5)
    "train": ("binarized_mnist_train.amat", 50_000, "db28b1a6ae0fe70cbd3da91acf46e477"),
    "val": ("binarized_mnist_valid.amat", 10_000, "bf37822a04e94123630de6a7dfd9c9ef"),
    "test": ("binarized_mnist_test.amat", 10_000, "14e41ae11040adba6ab8cb291eda0dd8"),
}
PIXELS = 784
CACHE_VERSION = 1


def parse_amat(path: Path, expected_images: int | None = None) -> np.ndarray:
    """Parse an .amat file (one image per line, 784 space-separated 0/1 values) into uint8 ``[N, 784]``.

    The files as distributed have a fixed layout, "d d ... d\\n" with 1,568 bytes a line, which is checked and
    read as one array; any other spacing falls back to numpy's text parser. Anything but lines of exactly 784
    binary values is refused, naming the file.
    """
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    line = 2 * PIXELS
    rows = raw.reshape(-1, line) if len(raw) % line == 0 else None
    if rows is not None and (rows[:, 1:-1:2] == ord(" ")).all() and (rows[:, -1] == ord("\n")).all():
        pixels = rows[:, 0::2] - np.uint8(ord("0"))
    else:
        if len(raw) and raw[-1] != ord("\n"):
            raise OSError(f"{path}: the last line has no newline: the file looks truncated")
        try:
            pixels = np.loadtxt(path, dtype=np.int64, ndmin=2)
        except ValueError as err:
            raise OSError(f"{path}: {err}: the file is corrupt") from err
        if pixels.shape[1] != PIXELS:
            raise OSError(f"{path}: lines of {pixels.shape[1]} values, not {PIXELS}: the file is corrupt")
    bad = np.argwhere(pixels > 1)
    if len(bad):
        raise OSError(f"{path}: line {bad[0][0] + 1} holds a value other than 0 or 1: the file is corrupt")
    if expected_images is not None and len(pixels) != expected_images:
        raise OSError(f"{path}: {len(pixels)} lines, expected {expected_images}: the file looks truncated")
    return pixels.astype(np.uint8)


class BinarizedMNISTDataModule(ImageDataModule):
    """The official 50,000 / 10,000 / 10,000 split, used as is. Already binary: ``binarize`` does nothing.

    ``data_dir`` holds ``BinarizedMNIST/binarized_mnist_{train,valid,test}.amat``. The first load parses the
    text and caches a packed binary copy under ``cache_dir`` (the user's cache folder by default: the data folder
    is never written); later loads read the copy.
    """

    image_shape = (1, 28, 28)

    def __init__(self, cache_dir: str | None = None, verify: bool = True, **kwargs):
        kwargs.setdefault("binarize", "none")
        super().__init__(**kwargs)
        self.cache_dir = cache_dir
        self.verify = verify

    subfolder = "BinarizedMNIST"

    def path(self, split: str) -> Path:
        return self.folder / SPLITS[split][0]

    name = "binarized MNIST"
    source = URL

    def expected_files(self) -> list[str]:
        return [file for file, _, _ in SPLITS.values()]

    def fetch(self) -> None:
        for split, (file, _, checksum) in SPLITS.items():
            if not self.path(split).is_file():
                download_url(URL + file, str(self.folder), file, md5=checksum)

    def load_split(self, split: str) -> torch.Tensor:
        """uint8 ``[N, 1, 28, 28]`` with values 0 or 255, from the cache when it matches the source file."""
        source = self.path(split)
        self.require_files()
        # A copy parsed without the checks (data.verify=false) never serves a run that asks for them.
        cached = load_or_build(
            source,
            cache_path(source, self.cache_dir),
            lambda: self._parse(split),
            CACHE_VERSION,
            accept=lambda cached: bool(cached.get("verified")) or not self.verify,
        )
        return self._unpack(cached["packed"], cached["count"])

    def _parse(self, split: str) -> dict:
        source = self.path(split)
        _, count, checksum = SPLITS[split]
        if self.verify and (actual := md5(source)) != checksum:
            raise OSError(
                f"{source}: md5 {actual} differs from the published {checksum}: the file is corrupt or "
                f"not the original; delete it and download it again (data.verify=false skips this check)"
            )
        pixels = parse_amat(source, count if self.verify else None)
        return {
            "packed": torch.from_numpy(np.packbits(pixels, axis=1)),
            "count": len(pixels),  # 98 bytes an image
            "verified": self.verify,
        }

    @staticmethod
    def _unpack(packed: torch.Tensor, count: int) -> torch.Tensor:
        pixels = np.unpackbits(packed.numpy(), axis=1, count=PIXELS)[:count]
        return torch.from_numpy(pixels * np.uint8(255)).view(-1, 1, 28, 28)

    def load_splits(self) -> dict[str, torch.Tensor]:
        return {split: self.load_split(split) for split in SPLITS}
