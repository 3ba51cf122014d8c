"""Run folders are never shared: runs started in the same second each get their own."""

import subprocess
import sys

import pytest
from conftest import ROOT, TINY

from draw_exp import run_folder


def test_a_taken_folder_gives_the_next_free_name(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder, "_claimed", {})
    base = str(tmp_path / "2026-01-01" / "12-00-00")
    assert run_folder.unique_folder(base) == base
    assert run_folder.unique_folder(base) == base  # asked again by the same process: the same folder
    monkeypatch.setattr(run_folder, "_claimed", {})  # another process asking for the same second
    assert run_folder.unique_folder(base) == base + "-1"
    monkeypatch.setattr(run_folder, "_claimed", {})
    assert run_folder.unique_folder(base) == base + "-2"
    assert sorted(p.name for p in (tmp_path / "2026-01-01").iterdir()) == ["12-00-00", "12-00-00-1", "12-00-00-2"]


@pytest.mark.slow
def test_runs_started_together_never_share_a_folder(mnist_dir, tmp_path):
    """Three train.py started at once with the default run folder (time-stamped to the second)."""
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *TINY,
        f"paths.data_dir={mnist_dir}",
        "logger=csv",
        "callbacks.pictures=null",
        f"paths.output_root={tmp_path / 'outputs'}",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
    ]
    runs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()[-3000:]
    folders = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(folders) == 3
    for folder in folders:  # each with its own config and its own checkpoint
        assert (folder / ".hydra" / "overrides.yaml").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
