"""Shared fixtures: small data files in the real on-disk formats, and a command runner for train.py."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return write_mnist(tmp_path / "data")


TINY = [
    "attention=gaussian", "T=2", "latent_size=4", "lstm_size=16", "attention.read_size=2", "attention.write_size=3",
    "data.val_size=50", "data.batch_size=25", "data.num_workers=0", "data.download=false",
    "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.log_every_n_steps=1",
]


def run_train(*overrides: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python train.py`` as a user would, with W&B forced offline and no network needed."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
