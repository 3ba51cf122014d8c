"""SVHN: torchvision's cropped digits, and the paper's protocol on the full house-number images."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import SVHN
from torchvision.datasets.utils import download_url

from draw_exp.data.base import ImageDataModule
from draw_exp.data.files import cache_path, load_or_build
from draw_exp.errors import check_int_range, check_number

FORMAT1_URL = "http://ufldl.stanford.edu/housenumbers/"


class SVHNDataModule(ImageDataModule):
    """torchvision's SVHN (format 2: 32×32×3 cropped digits). Validation is held out of ``train`` with a fixed
    seed; ``use_extra`` adds the 531,131 ``extra`` images to training. ``data_dir`` holds ``SVHN/*_32x32.mat``.
    """

    image_shape = (3, 32, 32)
    default_likelihood = "discretized_logistic"

    def __init__(self, val_size: int = 5000, use_extra: bool = False, **kwargs):
        kwargs.setdefault("binarize", "none")
        super().__init__(**kwargs)
        self.val_size = check_int_range("data.val_size", val_size, 1)  # the upper bound: when the file is read
        self.use_extra = use_extra

    subfolder = "SVHN"

    def splits(self) -> list[str]:
        return ["train", "test"] + (["extra"] if self.use_extra else [])

    name = "SVHN"
    source = "torchvision's SVHN, format 2 .mat files"

    def expected_files(self) -> list[str]:
        return [SVHN.split_list[s][1] for s in self.splits()]

    def fetch(self) -> None:
        for split in self.splits():
            SVHN(str(self.folder), split=split, download=True)

    def _read(self, split: str) -> torch.Tensor:
        path = self.folder / SVHN.split_list[split][1]
        self.require_files()
        try:
            return torch.from_numpy(SVHN(str(self.folder), split=split).data)  # [N, 3, 32, 32] uint8
        except Exception as err:  # torchvision checks the md5 and raises RuntimeError on a mismatch
            raise OSError(
                f"could not read {path}: {err} (the md5 check failed or the file is damaged): delete it "
                f"and download it again"
            ) from err

    def load_splits(self) -> dict[str, torch.Tensor]:
        train, val = self.random_split(self._read("train"), self.val_size)
        if self.use_extra:
            train = torch.cat([train, self._read("extra")])
        return {"train": train, "val": val, "test": self._read("test")}


def read_digit_struct(data: bytes) -> list[tuple[str, dict[str, list[float]]]]:
    """Parse SVHN's ``digitStruct.mat`` (MATLAB v7.3, i.e. HDF5): per image its file name and the digits' boxes
    ``{"left", "top", "width", "height", "label"}`` (one value per digit)."""
    import h5py  # only the paper's SVHN protocol needs it

    with h5py.File(io.BytesIO(data), "r") as f:
        group = f["digitStruct"]
        names, boxes = group["name"], group["bbox"]
        out = []
        for i in range(names.shape[0]):
            name = "".join(chr(int(c)) for c in f[names[i, 0]][()].flatten())
            box = f[boxes[i, 0]]

            def values(box, key):
                attr = box[key]
                if attr.dtype == h5py.ref_dtype:  # several digits: a reference per digit
                    return [float(f[attr[j, 0]][()].flatten()[0]) for j in range(attr.shape[0])]
                return [float(v) for v in attr[()].flatten()]

            out.append((name, {k: values(box, k) for k in ("left", "top", "width", "height", "label")}))
        return out


def crop_box(box: dict[str, list[float]], width: int, height: int, enlarge: float) -> tuple[int, int, int, int]:
    """The box around all digits, enlarged by ``enlarge`` (0.3: 30%) about its centre and clipped to the image:
    (left, top, right, bottom) in pixels, right and bottom exclusive."""
    left = min(box["left"])
    top = min(box["top"])
    right = max(x + w for x, w in zip(box["left"], box["width"], strict=True))
    bottom = max(y + h for y, h in zip(box["top"], box["height"], strict=True))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half_w, half_h = (right - left) * (1 + enlarge) / 2, (bottom - top) * (1 + enlarge) / 2
    x0, y0 = max(0, round(cx - half_w)), max(0, round(cy - half_h))
    x1, y1 = min(width, round(cx + half_w)), min(height, round(cy + half_h))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def preprocess_archive(path: Path, size: int, enlarge: float) -> torch.Tensor:
    """Goodfellow et al. (2013): crop each full image to its enlarged digit box and resize to size×size.
    Returns uint8 ``[N, 3, size, size]`` in digitStruct's order."""
    pngs, digit_struct = {}, None
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.rsplit("/", 1)[-1]
            if name == "digitStruct.mat":
                digit_struct = tar.extractfile(member).read()
            elif name.endswith(".png"):
                pngs[name] = tar.extractfile(member).read()
    if digit_struct is None:
        raise OSError(f"{path}: no digitStruct.mat inside: not an SVHN format-1 archive, or a damaged one")
    images = []
    for name, box in read_digit_struct(digit_struct):
        if name not in pngs:
            raise OSError(f"{path}: digitStruct.mat names {name}, which the archive does not hold")
        image = Image.open(io.BytesIO(pngs[name])).convert("RGB")
        crop = image.crop(crop_box(box, image.width, image.height, enlarge)).resize((size, size), Image.BILINEAR)
        images.append(np.asarray(crop).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(images))


class SVHNPaperDataModule(ImageDataModule):
    """The paper's SVHN protocol (Goodfellow et al., 2013): the full house-number images of format 1, cropped to
    the box around all digits enlarged by 30%, resized to 64×64 once and cached; training draws random 54×54
    patches, validation and test take the centre patch.

    Split: ``val_size`` = 4,701 images held out of train+extra with ``split_seed``, the remaining 231,054 for
    training (the paper reports 231,053 and 4,701); test is SVHN's 13,068 test images. ``data_dir`` holds
    ``SVHN/{train,extra,test}.tar.gz``.
    """

    default_likelihood = "discretized_logistic"

    def __init__(
        self,
        val_size: int = 4701,
        use_extra: bool = True,
        size: int = 64,
        crop: int = 54,
        enlarge: float = 0.3,
        cache_dir: str | None = None,
        **kwargs,
    ):
        kwargs.setdefault("binarize", "none")
        super().__init__(**kwargs)
        self.size = check_int_range("data.size", size, 1)
        self.crop = check_int_range("data.crop", crop, 1, size, "at most data.size")
        self.image_shape = (3, crop, crop)
        self.val_size = check_int_range("data.val_size", val_size, 1)  # the upper bound: when the file is read
        self.use_extra = use_extra
        self.enlarge = check_number("data.enlarge", enlarge, 0, inclusive=True, why="0.3: the box 30% larger")
        self.cache_dir = cache_dir

    subfolder = "SVHN"

    def archives(self) -> list[str]:
        return ["train"] + (["extra"] if self.use_extra else []) + ["test"]

    name = "SVHN format-1"
    source = FORMAT1_URL + " (PNGs with digitStruct.mat)"

    def expected_files(self) -> list[str]:
        return [f"{a}.tar.gz" for a in self.archives()]

    def fetch(self) -> None:
        for file in self.missing_files():
            download_url(FORMAT1_URL + file, str(self.folder), file)

    def prepare_data(self) -> None:
        super().prepare_data()
        for archive in self.archives():
            self.load_archive(archive)  # builds the cache once, on one process

    def load_archive(self, archive: str) -> torch.Tensor:
        source = self.folder / f"{archive}.tar.gz"
        self.require_files()
        cache = cache_path(source, self.cache_dir, suffix=f".{self.size}px-{self.enlarge}.cache.pt")
        return load_or_build(source, cache, lambda: {"images": self._preprocess(source)})["images"]

    def _preprocess(self, source: Path) -> torch.Tensor:
        try:
            return preprocess_archive(source, self.size, self.enlarge)
        except (tarfile.TarError, EOFError, OSError, KeyError) as err:
            raise OSError(
                f"could not read {source}: {err}: the archive looks truncated or corrupt; delete it and "
                f"download it again"
            ) from err

    def load_splits(self) -> dict[str, torch.Tensor]:
        pool = torch.cat([self.load_archive(a) for a in self.archives() if a != "test"])
        train, val = self.random_split(pool, self.val_size)
        return {"train": train, "val": val, "test": self.load_archive("test")}
