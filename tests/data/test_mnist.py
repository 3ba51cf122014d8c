"""The MNIST DataModule, on small files in torchvision's on-disk layout."""

import pytest
import torch

from draw_exp.data import ImageDataset, MNISTDataModule
from draw_exp.errors import ConfigError


def datamodule(root, **kw):
    args = {"data_dir": str(root), "val_size": 50, "batch_size": 16, "num_workers": 0, "download": False}
    return MNISTDataModule(**{**args, **kw})


def test_reads_the_idx_files_through_torchvision_and_splits_them(mnist_dir):
    dm = datamodule(mnist_dir)
    dm.prepare_data()
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 150, "val": 50, "test": 100}
    x, indices = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert indices.shape == (16,) and len(set(indices.tolist())) == 16 and int(indices.max()) < 150


def test_the_split_is_fixed_by_its_seed(mnist_dir):
    def val_images(seed):
        dm = datamodule(mnist_dir, split_seed=seed, binarize="none")
        dm.setup()
        return dm.datasets["val"].images

    assert torch.equal(val_images(0), val_images(0))
    assert not torch.equal(val_images(0), val_images(1))


def test_dynamic_binarisation_draws_afresh_for_training_and_once_for_evaluation():
    images = torch.full((4, 1, 28, 28), 128, dtype=torch.uint8)
    train = ImageDataset(images, "dynamic")
    torch.manual_seed(0)
    a, b = train.image(0), train.image(0)
    assert set(a.unique().tolist()) == {0.0, 1.0} and not torch.equal(a, b)
    assert 0.4 < a.mean() < 0.6  # Bernoulli(128/255)
    val = ImageDataset(images, "dynamic", fixed_seed=3)
    assert torch.equal(val.image(1), val.image(1))
    assert torch.equal(val.image(1), ImageDataset(images, "dynamic", fixed_seed=3).image(1))


def test_threshold_binarisation():
    images = torch.tensor([0, 127, 128, 255], dtype=torch.uint8).view(1, 1, 2, 2)
    torch.testing.assert_close(ImageDataset(images, "threshold").image(0), torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]))
    torch.testing.assert_close(ImageDataset(images, "none").image(0), images[0].float() / 255)


def test_missing_files_name_the_folder_and_the_files(tmp_path):
    dm = datamodule(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message


def test_a_truncated_file_is_named_not_read(mnist_dir):
    path = mnist_dir / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(OSError, match=r"train files train-images-idx3-ubyte.* in .*MNIST/raw"):
        datamodule(mnist_dir).setup()


def test_validation_size_must_leave_training_images(mnist_dir):
    with pytest.raises(ConfigError, match=r"data\.val_size=200"):
        datamodule(mnist_dir, val_size=200).setup()


def test_bad_loader_settings_are_refused_before_reading(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.batch_size=0"):
        datamodule(tmp_path, batch_size=0)
    with pytest.raises(ConfigError, match=r"data\.binarize='sometimes'"):
        datamodule(tmp_path, binarize="sometimes")


def test_items_are_images_with_their_index():
    images = torch.arange(3, dtype=torch.uint8).view(3, 1, 1, 1)
    dataset = ImageDataset(images, "none")
    for k in range(3):
        image, index = dataset[k]
        assert index == k and torch.equal(image, dataset.image(k))


def test_a_failed_download_leaves_no_empty_folders_behind(tmp_path, monkeypatch):
    """Offline, or a mistyped data folder with downloads on: the error names the files, and the folders the
    download attempt made are gone (a folder that already existed stays)."""
    (tmp_path / "data").mkdir()

    def offline_fetch(self):
        self.folder.mkdir(parents=True)  # as torchvision does before its first request
        raise ConnectionError("no network")

    monkeypatch.setattr(MNISTDataModule, "fetch", offline_fetch)
    with pytest.raises(FileNotFoundError, match="Downloading failed: no network"):
        datamodule(tmp_path / "data" / "typo", download=True).prepare_data()
    assert list(tmp_path.iterdir()) == [tmp_path / "data"] and not any((tmp_path / "data").iterdir())
