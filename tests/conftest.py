"""Shared fixtures: small data files in the real on-disk formats, and a command runner for train.py."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the IDX layout of MNIST's files: magic 0x08 0x0N, big-endian dims, bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    """Small MNIST-format files under ``root/MNIST/raw`` (torchvision's layout): blobs of ink on black."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.zeros((n, 28, 28), np.uint8)
        for k in range(n):
            r, c = rng.integers(4, 20, size=2)
            images[k, r : r + 8, c : c + 4] = rng.integers(128, 256)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))
    return root


if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker, and per command a worker starts, when pytest-xdist runs a worker per core: more threads
    # than cores make PyTorch's thread pools wait on each other (10-40x slower steps were seen).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def private_cache_folder(tmp_path_factory):
    """Data caches of the tests (and of the commands they run) go to a temporary folder, not the user's."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return write_mnist(tmp_path / "data")


TINY = [
    "attention=gaussian",
    "T=2",
    "latent_size=4",
    "lstm_size=16",
    "attention.read_size=2",
    "attention.write_size=3",
    "data.val_size=50",
    "data.batch_size=25",
    "data.num_workers=0",
    "data.download=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.log_every_n_steps=1",
    "model.engine=fused_loop",  # no compile time; the default engine (auto) runs in test_train.py's README commands
]


def tiny_without(*keys: str) -> list[str]:
    """TINY less its overrides of ``keys``, for commands that set them otherwise (a multirun takes a key once)."""
    return [o for o in TINY if o.split("=", 1)[0] not in keys]


def run_script(script: str, *overrides: str, cwd: Path, env: dict | None = None, timeout: int = 300):
    """Run ``python <script>`` from the repository as a user would, with W&B offline and no network needed."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_train(*overrides: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_script("train.py", *overrides, cwd=cwd, env=env, timeout=timeout)


def write_amat(path: Path, pixels: np.ndarray) -> None:
    """Larochelle & Murray's .amat text: one image a line, 784 space-separated 0/1 values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in pixels.astype(int)))


def write_binarized_mnist(root: Path, sizes=(60, 20, 30), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in zip(("train", "valid", "test"), sizes, strict=True):
        written[split] = (rng.random((n, 784)) < 0.2).astype(np.uint8)
        write_amat(root / "BinarizedMNIST" / f"binarized_mnist_{split}.amat", written[split])
    return written


def write_svhn_mat(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """torchvision's SVHN format 2: MATLAB v5 with X [32, 32, 3, N] uint8 and y [N, 1] in 1..10."""
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": labels.reshape(-1, 1)})


def write_digit_struct(path: Path, entries) -> None:
    """SVHN's digitStruct.mat (MATLAB v7.3 = HDF5): digitStruct/name and digitStruct/bbox hold object references;
    a box field is a 1×1 value for one digit and a column of references for several, as SVHN ships it."""
    import h5py

    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        names, boxes = [], []
        for i, (name, box) in enumerate(entries):
            names.append(refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in name], np.uint16)).ref)
            group = refs.create_group(f"b{i}")
            for key in ("height", "label", "left", "top", "width"):
                values = box[key]
                if len(values) == 1:
                    group.create_dataset(key, data=np.array([[values[0]]], np.float64))
                else:
                    value_refs = [
                        refs.create_dataset(f"v{i}{key}{j}", data=np.array([[v]], np.float64)).ref
                        for j, v in enumerate(values)
                    ]
                    group.create_dataset(key, data=np.array(value_refs, dtype=h5py.ref_dtype).reshape(-1, 1))
            boxes.append(group.ref)
        ds = f.create_group("digitStruct")
        ds.create_dataset("name", data=np.array(names, dtype=h5py.ref_dtype).reshape(-1, 1))
        ds.create_dataset("bbox", data=np.array(boxes, dtype=h5py.ref_dtype).reshape(-1, 1))


def write_svhn_format1(path: Path, split: str, n: int, seed: int = 0):
    """A format-1 archive: <split>/1.png ... and <split>/digitStruct.mat. Each image is grey with a coloured
    rectangle exactly where its digit boxes are. Returns the boxes."""
    import io
    import tarfile

    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    with tarfile.open(path, "w:gz") as tar:

        def add(name, data):
            info = tarfile.TarInfo(f"{split}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i in range(1, n + 1):
            width, height = int(rng.integers(60, 120)), int(rng.integers(40, 80))
            digits = int(rng.integers(1, 4))
            left0, top = int(rng.integers(5, 20)), int(rng.integers(5, 15))
            box = {"left": [], "top": [], "width": [], "height": [], "label": []}
            image = np.full((height, width, 3), 100, np.uint8)
            for d in range(digits):
                left, w, h = left0 + 10 * d, 9, 20
                box["left"].append(left), box["top"].append(top), box["width"].append(w)
                box["height"].append(h), box["label"].append(float(rng.integers(1, 11)))
                image[top : top + h, left : left + w] = (250, 20, 20)
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            add(f"{i}.png", png.getvalue())
            entries.append((f"{i}.png", box))
        struct = path.parent / f".{split}-digitStruct.mat"
        write_digit_struct(struct, entries)
        add("digitStruct.mat", struct.read_bytes())
        struct.unlink()
    return entries


def write_cifar10(root: Path, per_batch: int = 12, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-10's python version under ``root/cifar-10-batches-py``: five training batches, a test batch and
    batches.meta, each a pickled dict; ``data`` rows are 3,072 bytes, the red plane then green then blue."""
    import pickle

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        written[name] = data
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": rng.integers(0, 10, n).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return written


@pytest.fixture
def float64():
    """Exact comparisons: the test runs in float64, and the default dtype is restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
