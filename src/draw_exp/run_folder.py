"""Run folders that are never shared: two runs started in the same second get two folders."""

from __future__ import annotations

import shutil
from pathlib import Path

from omegaconf import OmegaConf

_claimed: dict[str, str] = {}  # base → the folder this process claimed for it (Hydra resolves run.dir more than once)


def unique_folder(base: str) -> str:
    """Create and return ``base``, or ``base-1``, ``base-2``... the first that did not exist. ``mkdir`` without
    ``exist_ok`` either creates the folder or fails, atomically, so of two processes asking at once each gets its
    own. The same ``base`` asked again in this process returns the folder already claimed."""
    if base not in _claimed:
        Path(base).parent.mkdir(parents=True, exist_ok=True)
        for n in range(10_000):
            candidate = base if n == 0 else f"{base}-{n}"
            try:
                Path(candidate).mkdir()
            except FileExistsError:
                continue
            _claimed[base] = candidate
            break
        else:
            raise FileExistsError(f"{base}: 10,000 run folders of that name exist already")
    return _claimed[base]


def remove_if_unused(folder: str | Path) -> bool:
    """Remove ``folder`` if this process created it (:func:`unique_folder`) and it holds nothing but Hydra's own
    files (``.hydra/``, the job's ``.log``): a run refused before any work leaves no empty run folder behind. A
    folder named on the command line (a resume's) or holding anything else is never touched."""
    folder = Path(folder).resolve()
    created = {Path(claimed).resolve() for claimed in _claimed.values()}
    if folder not in created or not folder.is_dir():
        return False
    if any(entry.name != ".hydra" and entry.suffix != ".log" for entry in folder.iterdir()):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def register_resolvers() -> None:
    """``${unique_folder:...}`` for the configs' ``hydra.run.dir`` and ``hydra.sweep.dir``. Cached in the config
    like Hydra's ``${now:...}``: Hydra copies that cache into each job's config of a multirun, and the submitit
    launcher pickles it along to its processes, so every job of one multirun lands in the folder it claimed."""
    if not OmegaConf.has_resolver("unique_folder"):
        OmegaConf.register_new_resolver("unique_folder", unique_folder, use_cache=True)
