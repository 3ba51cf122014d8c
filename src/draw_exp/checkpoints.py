"""Checkpoint files: written atomically, read without executing code, with errors that name the file."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


def save_atomically(obj, path: str | Path) -> None:
    """torch.save ``obj`` to ``path`` with :func:`write_atomically`."""
    write_atomically(path, lambda f: torch.save(obj, f))


def write_atomically(path: str | Path, write) -> None:
    """``write(f)`` into a temporary file in the same folder (binary), flush it to disk, then rename it over
    ``path``.

    The rename is atomic on one file system, so a crash or a SIGKILL at any moment leaves either the old file or
    the new one at ``path``, never a truncated one (at worst a stray ``.<name>.*.tmp`` beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are as readable as the run folder
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO for local files, with :func:`save_atomically` for every save (Lightning's own
    stages the file in the system temp folder and copies it over when that is another file system)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)  # remote stores: Lightning's own
        save_atomically(checkpoint, path)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt, or holds more than tensors and plain values."""


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """Load ``path`` on the CPU with ``weights_only=True`` (no code in the file runs), or raise
    :class:`CheckpointError` naming the config key, the file and what went wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}={str(path)!r}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's wording differs between versions: "Unsupported global: GLOBAL x.y", "unsupported GLOBAL x.y ..."
        refused = re.search(r"(?:GLOBAL|global) ([\w.]+)|[Uu]nsupported operand (\S+)", str(err))
        if isinstance(err, pickle.UnpicklingError) and (refused or "Weights only load failed" in str(err)):
            what = f"refused: {refused.group(1) or 'operand ' + refused.group(2)}" if refused else "refused"
            raise CheckpointError(
                f"{key}={str(path)!r}: this file holds objects other than tensors and plain values ({what}), and "
                "such objects are never loaded here: a checkpoint is data, never code. Use a checkpoint written by "
                "draw-exp."
            ) from None
        # torch raises RuntimeError, EOFError, UnpicklingError... for a truncated or damaged file
        raise CheckpointError(
            f"{key}={str(path)!r}: cannot read this checkpoint ({path.stat().st_size} bytes): it is truncated or "
            f"corrupt. Cause: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        ) from err


# "module": which LightningModule wrote it (the classifier says so; DRAW's checkpoints have no such key)
SHARED_KEYS = ("hyper_parameters", "state_dict", "datamodule_hyper_parameters", "global_step", "epoch", "module")


def slim_checkpoint(source: str | Path, target: str | Path, data_dir: str = "data") -> Path:
    """A copy of a training checkpoint for sharing: the model's settings and weights, its run's data settings
    (``data_dir`` replaced, since the training machine's folder means nothing elsewhere), step and epoch; no
    optimiser state, RNG states or logger ids. evaluate.py and sample.py read it like the full one."""
    checkpoint = read_checkpoint(source)
    slim = {key: checkpoint[key] for key in SHARED_KEYS if key in checkpoint}
    if "datamodule_hyper_parameters" in slim:
        slim["datamodule_hyper_parameters"] = {**slim["datamodule_hyper_parameters"], "data_dir": data_dir}
    save_atomically(slim, target)
    return Path(target)


if __name__ == "__main__":  # python -m draw_exp.checkpoints SOURCE TARGET: a slim copy for sharing
    import sys

    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m draw_exp.checkpoints SOURCE.ckpt TARGET.ckpt")
    print(slim_checkpoint(sys.argv[1], sys.argv[2]))
