"""Binarized MNIST (Larochelle & Murray): the .amat files, the official split, the binary cache."""

import os
import stat

import numpy as np
import pytest
import torch
from conftest import write_amat, write_binarized_mnist

from draw_exp.data import BinarizedMNISTDataModule
from draw_exp.data import binarized_mnist as bm


def datamodule(root, **kw):
    args = {
        "data_dir": str(root),
        "download": False,
        "verify": False,
        "num_workers": 0,
        "batch_size": 8,
        "cache_dir": str(root / "cache"),
    }
    return BinarizedMNISTDataModule(**{**args, **kw})


def test_parses_the_official_split_as_is(tmp_path):
    written = write_binarized_mnist(tmp_path)
    dm = datamodule(tmp_path)
    dm.setup()
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        images = dm.datasets[split].images
        assert images.shape == (len(written[name]), 1, 28, 28)
        np.testing.assert_array_equal(images.view(-1, 784).numpy() // 255, written[name])  # same order, same pixels
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and set(x.unique().tolist()) <= {0.0, 1.0}


def test_parse_agrees_with_a_text_parser(tmp_path):
    pixels = (np.random.default_rng(1).random((5, 784)) < 0.5).astype(np.uint8)
    write_amat(tmp_path / "a.amat", pixels)
    np.testing.assert_array_equal(bm.parse_amat(tmp_path / "a.amat"), np.loadtxt(tmp_path / "a.amat", dtype=np.uint8))


def test_first_load_caches_in_the_cache_folder_and_later_loads_skip_the_parse(tmp_path, monkeypatch):
    write_binarized_mnist(tmp_path)
    first = datamodule(tmp_path).load_splits()
    assert len(list((tmp_path / "cache").rglob("binarized_mnist_*.amat.cache.pt"))) == 3
    assert sorted(p.name for p in (tmp_path / "BinarizedMNIST").iterdir()) == [
        f"binarized_mnist_{s}.amat" for s in ("test", "train", "valid")
    ]  # even a writable data folder is not written

    def no_parse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(bm, "parse_amat", no_parse)
    later = datamodule(tmp_path).load_splits()
    for split in first:
        assert torch.equal(first[split], later[split])


def test_a_read_only_data_folder_caches_in_the_cache_folder(tmp_path):
    write_binarized_mnist(tmp_path / "shared")
    folder = tmp_path / "shared" / "BinarizedMNIST"
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        datamodule(tmp_path / "shared", cache_dir=str(tmp_path / "cache")).load_splits()
        assert sorted(p.name for p in folder.iterdir()) == [
            f"binarized_mnist_{s}.amat" for s in ("test", "train", "valid")
        ]
        assert len(list((tmp_path / "cache").rglob("*.cache.pt"))) == 3
    finally:
        os.chmod(folder, stat.S_IRWXU)


def test_a_changed_source_rebuilds_the_cache(tmp_path):
    write_binarized_mnist(tmp_path, seed=0)
    datamodule(tmp_path).load_splits()
    rewritten = write_binarized_mnist(tmp_path, sizes=(61, 20, 30), seed=5)
    train = datamodule(tmp_path).load_split("train")
    np.testing.assert_array_equal(train.view(-1, 784).numpy() // 255, rewritten["train"])


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda text: text[: len(text) // 2 + 7], "truncated"),
        (lambda text: text.replace("1", "2", 1), "value other than 0 or 1"),
        (lambda text: text.replace(" 0\n", "\n", 1), "corrupt"),
    ],
    ids=["truncated", "bad-byte", "short-line"],
)
def test_a_corrupt_file_is_named_never_silently_read(tmp_path, damage, message):
    write_binarized_mnist(tmp_path)
    path = tmp_path / "BinarizedMNIST" / "binarized_mnist_valid.amat"
    path.write_text(damage(path.read_text()))
    with pytest.raises(OSError, match=message) as err:
        datamodule(tmp_path).load_splits()
    assert "binarized_mnist_valid.amat" in str(err.value)


def test_a_copy_parsed_without_checks_never_serves_a_run_that_verifies(tmp_path):
    """A cache built with verify=false (a 30-image 'test set', say) is rebuilt, and so checked, for verify=true."""
    write_binarized_mnist(tmp_path)
    datamodule(tmp_path, verify=False).load_splits()
    with pytest.raises(OSError, match=r"md5 .* differs from the published"):
        datamodule(tmp_path, verify=True).load_splits()


def test_default_cache_is_the_users_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_binarized_mnist(tmp_path / "data")
    BinarizedMNISTDataModule(data_dir=str(tmp_path / "data"), download=False, verify=False).load_splits()
    assert len(list((tmp_path / "xdg" / "draw-exp").rglob("*.cache.pt"))) == 3


def test_verify_checks_the_published_md5(tmp_path):
    write_binarized_mnist(tmp_path)
    with pytest.raises(OSError, match=r"binarized_mnist_train\.amat: md5 .* differs from the published db28b1a6"):
        datamodule(tmp_path, verify=True).load_splits()


def test_missing_files_name_the_folder_and_the_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        datamodule(tmp_path).prepare_data()
    assert str(tmp_path / "BinarizedMNIST") in str(err.value)
    assert "binarized_mnist_train.amat" in str(err.value) and "binarized_mnist_test.amat" in str(err.value)
