"""CIFAR-10 through torchvision, on small files in its python-pickle batch format."""

import numpy as np
import pytest
import torch
from conftest import write_cifar10

from draw_exp.data import CIFAR10DataModule


def datamodule(root, **kw):
    kw = {"data_dir": str(root), "val_size": 10, "verify": False, "num_workers": 0, "download": False, **kw}
    return CIFAR10DataModule(**kw)


def test_reads_the_batches_as_colour_images_and_holds_out_validation(tmp_path):
    written = write_cifar10(tmp_path)
    dm = datamodule(tmp_path)
    assert dm.image_shape == (3, 32, 32) and dm.default_likelihood == "discretized_logistic"
    dm.setup()
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [50, 10, 10]
    test = dm.datasets["test"].images
    assert test.dtype == torch.uint8 and test.shape == (10, 3, 32, 32)
    # a row is the red plane, then green, then blue, each 32 rows of 32: channel c, pixel (h, w)
    row = written["test_batch"][4]
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert test[4, c, h, w] == row[c * 1024 + h * 32 + w]
    train_and_val = torch.cat([dm.datasets["train"].images, dm.datasets["val"].images]).flatten(1)
    all_train = torch.from_numpy(np.concatenate([written[f"data_batch_{i}"] for i in range(1, 6)]))
    assert sorted(map(tuple, train_and_val.tolist())) == sorted(map(tuple, all_train.tolist()))
    image, _index = dm.datasets["val"][0]
    assert image.shape == (3, 32, 32) and 0 <= image.min() <= image.max() <= 1  # intensities: binarize=none


def test_files_that_fail_the_md5_check_are_named(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(OSError, match=r"cifar-10-batches-py.*Delete the folder and download again"):
        datamodule(tmp_path, verify=True).setup()


def test_missing_files_name_the_folder_and_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 files missing in .*cifar-10-batches-py: data_batch_1"):
        datamodule(tmp_path).setup()
