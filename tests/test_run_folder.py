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


def multirun_command(*overrides, mnist_dir, output_root):
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "T=2,3",
        *[o for o in TINY if not o.startswith("T=")],
        f"paths.data_dir={mnist_dir}",
        "logger=csv",
        "callbacks.pictures=null",
        f"paths.output_root={output_root}",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        *overrides,
    ]


def sweep_folders(output_root):
    """{sweep folder name: its job folders' names} under <output_root>/multirun/<date>/."""
    return {
        sweep.name: sorted(job.name for job in sweep.iterdir() if job.is_dir() and not job.name.startswith("."))
        for sweep in (output_root / "multirun").glob("*/*")
    }


@pytest.mark.slow
def test_multiruns_started_together_never_share_a_sweep_folder(mnist_dir, tmp_path):
    """Two `train.py -m` (two jobs each) started at once, with the default sweep folder (time-stamped to the second):
    each multirun gets a folder of its own, with both its jobs in it."""
    output_root = tmp_path / "outputs"
    command = multirun_command(mnist_dir=mnist_dir, output_root=output_root)
    runs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()[-3000:]
    folders = sweep_folders(output_root)
    assert len(folders) == 2 and all(jobs == ["0", "1"] for jobs in folders.values()), folders
    for sweep in (output_root / "multirun").glob("*/*"):
        assert all((sweep / job / "checkpoints" / "last.ckpt").is_file() for job in ("0", "1"))


@pytest.mark.slow
def test_jobs_in_launcher_processes_land_in_the_sweep_folder_their_multirun_claimed(mnist_dir, tmp_path):
    """hydra-submitit-launcher runs each job in a process of its own (here on this machine, as on SLURM): the folder
    the multirun claimed travels with the config, so no job claims another one."""
    output_root = tmp_path / "outputs"
    command = multirun_command("hydra/launcher=submitit_local", mnist_dir=mnist_dir, output_root=output_root)
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = sweep_folders(output_root)
    assert len(folders) == 1 and next(iter(folders.values())) == ["0", "1"], folders
