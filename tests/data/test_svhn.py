"""SVHN: torchvision's cropped digits (format 2) and the paper's protocol on format-1 archives."""

import numpy as np
import pytest
import torch
from conftest import write_svhn_format1, write_svhn_mat
from torchvision.datasets import SVHN

from draw_exp.data import SVHNDataModule, SVHNPaperDataModule
from draw_exp.data.files import md5
from draw_exp.data.svhn import crop_box, read_digit_struct


@pytest.fixture
def svhn_dir(tmp_path, monkeypatch):
    """Small format-2 files; torchvision checks each file's md5, so the test registers the files' own."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    written = {}
    split_list = {}
    for split, n in (("train", 40), ("test", 12), ("extra", 9)):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        path = root / "SVHN" / f"{split}_32x32.mat"
        write_svhn_mat(path, images, rng.integers(1, 11, n))
        written[split] = images
        split_list[split] = [SVHN.split_list[split][0], path.name, md5(path)]
    monkeypatch.setattr(SVHN, "split_list", split_list)
    return root, written


def test_svhn_reads_torchvision_files_in_channel_first_order(svhn_dir):
    root, written = svhn_dir
    dm = SVHNDataModule(data_dir=str(root), val_size=10, download=False, num_workers=0, batch_size=4)
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 30, "val": 10, "test": 12}
    np.testing.assert_array_equal(dm.datasets["test"].images.numpy(), written["test"])
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 32, 32)
    torch.testing.assert_close(x, torch.from_numpy(written["test"][:4]).float() / 255)  # intensities, not binarised
    assert dm.default_likelihood == "discretized_logistic"


def test_svhn_extra_joins_training(svhn_dir):
    root, _ = svhn_dir
    dm = SVHNDataModule(data_dir=str(root), val_size=10, use_extra=True, download=False, num_workers=0)
    dm.setup()
    assert len(dm.datasets["train"]) == 30 + 9


def test_svhn_corrupt_and_missing_files_are_named(svhn_dir, tmp_path):
    root, _ = svhn_dir
    path = root / "SVHN" / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(OSError, match=r"test_32x32.mat"):
        SVHNDataModule(data_dir=str(root), download=False, val_size=10).load_splits()
    with pytest.raises(
        FileNotFoundError, match=r"SVHN files missing in .*nowhere/SVHN: train_32x32.mat, test_32x32.mat"
    ):
        SVHNDataModule(data_dir=str(tmp_path / "nowhere"), download=False).prepare_data()


def test_digit_struct_reads_one_and_several_digit_boxes(tmp_path):
    entries = write_svhn_format1(tmp_path / "SVHN" / "train.tar.gz", "train", 6, seed=3)
    import tarfile

    with tarfile.open(tmp_path / "SVHN" / "train.tar.gz") as tar:
        data = tar.extractfile("train/digitStruct.mat").read()
    parsed = read_digit_struct(data)
    assert [name for name, _ in parsed] == [name for name, _ in entries]
    assert {len(box["left"]) for _, box in entries} >= {1, 2}  # both layouts are exercised
    for (_, got), (_, want) in zip(parsed, entries, strict=True):
        assert got == want


def test_crop_box_encloses_all_digits_enlarged_by_30_percent():
    box = {"left": [10.0, 20.0], "top": [5.0, 8.0], "width": [8.0, 10.0], "height": [20.0, 20.0], "label": [1.0, 2.0]}
    # union: x 10..30 (w 20), y 5..28 (h 23); centre (20, 16.5); enlarged: w 26, h 29.9
    assert crop_box(box, 100, 100, 0.3) == (7, 2, 33, 31)
    assert crop_box(box, 25, 20, 0.3) == (7, 2, 25, 20)  # clipped to the image


def test_svhn_paper_protocol(tmp_path):
    root = tmp_path / "data"
    for split, n in (("train", 12), ("extra", 8), ("test", 6)):
        write_svhn_format1(root / "SVHN" / f"{split}.tar.gz", split, n, seed=len(split))
    dm = SVHNPaperDataModule(
        data_dir=str(root), val_size=5, download=False, num_workers=0, batch_size=4, cache_dir=str(tmp_path / "cache")
    )
    assert dm.image_shape == (3, 54, 54)
    dm.prepare_data()
    assert len(list((tmp_path / "cache").rglob("*.cache.pt"))) == 3  # resized once, cached in the cache folder
    assert not list((root / "SVHN").glob("*.cache.pt"))  # the data folder is never written
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 15, "val": 5, "test": 6}
    stored = dm.datasets["test"].images
    assert stored.shape == (6, 3, 64, 64)
    # the crop is the enlarged digit box: the red digits fill the middle, grey shows only at the margins
    centre = stored[:, :, 24:40, 24:40].float()
    assert (centre[:, 0] > 200).float().mean() > 0.6 and (stored[:, 0, :2, :2] < 150).all()
    x = dm.datasets["test"].image(0)
    assert x.shape == (3, 54, 54)
    torch.testing.assert_close(x, stored[0, :, 5:59, 5:59].float() / 255)  # evaluation: the centre patch
    torch.manual_seed(0)
    patches = {tuple(dm.datasets["train"].image(0).flatten()[:200].tolist()) for _ in range(20)}
    assert len(patches) > 1  # training: random patches


def test_svhn_paper_names_a_damaged_archive(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "test"):
        write_svhn_format1(root / "SVHN" / f"{split}.tar.gz", split, 3)
    path = root / "SVHN" / "test.tar.gz"
    path.write_bytes(path.read_bytes()[:200])
    dm = SVHNPaperDataModule(data_dir=str(root), use_extra=False, val_size=1, download=False)
    with pytest.raises(OSError, match=r"test.tar.gz"):
        dm.prepare_data()
