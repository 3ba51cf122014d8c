"""Many runs from one command: Hydra multiruns on this machine, and SLURM jobs through hydra-submitit-launcher."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT, run_train, tiny_without

pytestmark = pytest.mark.slow  # runs train.py, evaluate.py or sample.py as the user does


def test_a_hydra_multirun_trains_every_combination_in_its_own_folder(mnist_dir, tmp_path):
    sweep = tmp_path / "multirun"
    result = run_train(
        "-m",
        "attention=none,gaussian",
        "T=2,3",
        *tiny_without("attention", "T"),
        f"paths.data_dir={mnist_dir}",
        "logger=csv",
        "callbacks.pictures=null",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = set()
    for job in sorted(p for p in sweep.iterdir() if p.is_dir()):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        seen.add((config["attention"]["type"], config["T"]))
        assert {f"attention={config['attention']['type']}", f"T={config['T']}"} <= set(overrides)
        assert (job / "checkpoints" / "last.ckpt").is_file()
    assert seen == {("none", 2), ("none", 3), ("gaussian", 2), ("gaussian", 3)}


def test_hydra_launcher_submitit_slurm_submits_one_job_per_run_with_the_trainer_resources(tmp_path):
    """`sbatch` is replaced by a script that keeps the job file and answers as SLURM does: the submission is
    real up to the scheduler. The job file must ask for the nodes and GPUs of the trainer keys, one task per GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\ncp "$1" "$SBATCH_CAPTURE"\necho "Submitted batch job 4242"\n')
    for tool in ("srun", "sacct"):  # present, as on a cluster; sacct knows nothing of the job
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    capture = tmp_path / "job.sbatch"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SBATCH_CAPTURE": str(capture),
        "WANDB_MODE": "offline",
    }
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=600",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "T=16,32",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not capture.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # it would now wait for the jobs to finish
    output = process.communicate()[0]
    assert capture.exists(), output[-3000:]
    job = capture.read_text()
    for line in (
        "--partition=gpu",
        "--nodes=2",
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--time=600",
        "--array=0-1",
    ):  # T=16,32: two runs, one array job
        assert f"#SBATCH {line}" in job, job
    assert "srun" in job and "submitit.core._submit" in job
    assert "validated against ConfigStore schema" not in output
