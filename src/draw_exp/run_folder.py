"""Run folders that are never shared: two runs started in the same second get two folders."""

from __future__ import annotations

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


def register_resolvers() -> None:
    """``${unique_folder:...}`` for the configs' ``hydra.run.dir`` and ``hydra.sweep.dir``. Cached in the config
    like Hydra's ``${now:...}``: Hydra copies that cache into each job's config of a multirun, and the submitit
    launcher pickles it along to its processes, so every job of one multirun lands in the folder it claimed."""
    if not OmegaConf.has_resolver("unique_folder"):
        OmegaConf.register_new_resolver("unique_folder", unique_folder, use_cache=True)
