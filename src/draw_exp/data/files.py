"""File helpers shared by the data modules: checksums, downloads, read-only folders and binary caches."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from draw_exp.checkpoints import save_atomically


def md5(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "draw-exp"


def cache_path(source: Path, cache_dir: str | Path | None, suffix: str = ".cache.pt") -> Path:
    """Where the binary copy of ``source`` lives: in ``cache_dir`` (by default the user's cache folder,
    ~/.cache/draw-exp), never in the data folder, which may be shared by many users and should not change under
    them; under a name that includes the source's folder so copies never clash."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = hashlib.md5(str(source.resolve().parent).encode()).hexdigest()[:8]
    return root / f"{source.parent.name}-{tag}" / (source.name + suffix)


def source_stamp(source: Path) -> dict:
    """What identifies the file a cache was made from: if it changes, the cache is rebuilt."""
    st = source.stat()
    return {"path": str(source.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_or_build(source: Path, cache: Path, build, version: int = 1, accept=lambda cached: True) -> dict:
    """The cached dict made from ``source`` when it was made from this very file by this ``version`` of the
    code and ``accept(cached)`` holds (e.g. it was verified, when the caller verifies); else ``build()``, saved
    atomically to ``cache`` for next time. An unreadable cache is rebuilt."""
    stamp = {**source_stamp(source), "version": version}
    if cache.is_file():
        try:
            cached = torch.load(cache, weights_only=True)
            if cached.get("source") == stamp and accept(cached):
                return cached
        except Exception:
            pass  # unreadable or stale: rebuilt below from the source
    built = {**build(), "source": stamp}
    save_atomically(built, cache)
    return built
