"""`trainer=ddp`: Lightning's DDP on CPU processes (gloo), one run folder, and a bound that does not depend on the
number of processes."""

import json
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, run_train, tiny_without
from test_train import last_metrics

pytestmark = pytest.mark.slow  # runs train.py, evaluate.py or sample.py as the user does


def validate(ckpt, data_dir, devices: int) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "scripts" / "validate_checkpoint.py"),
            str(ckpt),
            str(data_dir),
            str(devices),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A 2-process DDP run of train.py, as a user types it."""
    from conftest import write_mnist

    root = tmp_path_factory.mktemp("ddp")
    data_dir = write_mnist(root / "data")
    run_dir = root / "run"
    # The whole epoch: 150 training images, 25 per device and step.
    result = run_train(
        *tiny_without("trainer.limit_train_batches"),
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        f"paths.data_dir={data_dir}",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, data_dir, run_dir


def test_ddp_trains_into_one_run_folder_with_one_checkpoint_set(ddp_run):
    root, _, run_dir = ddp_run
    assert sorted(p.name for p in root.iterdir()) == ["data", "run"]  # rank 1 made no folder of its own
    assert (run_dir / "ddp_rank_1.log").is_file()  # ... but ran, in this folder
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    # Each rank its own shard: the epoch of 150 images ends after 3 steps of 2 x 25 images (1 process: 6 steps).
    assert checkpoints == ["epoch000-step3.ckpt", "last.ckpt"]
    assert [p.name for p in (run_dir / "csv").iterdir()] == ["version_0"]  # one logger run
    assert len(list((run_dir / "pictures").iterdir())) == 1  # pictures from rank zero only


def test_ddp_logs_the_per_device_and_the_effective_batch_size(ddp_run):
    _, _, run_dir = ddp_run
    hparams = yaml.safe_load((run_dir / "csv" / "version_0" / "hparams.yaml").read_text())
    assert hparams["batch_size_per_device"] == 25 and hparams["effective_batch_size"] == 50
    assert hparams["world_size"] == 2 and hparams["config"]["trainer"]["strategy"] == "ddp"
    assert 0 < last_metrics(run_dir)["test/nll_bound"] < 1000


def test_the_validation_bound_is_the_same_with_two_processes_and_one(ddp_run):
    _, data_dir, run_dir = ddp_run
    one = validate(run_dir / "checkpoints" / "last.ckpt", data_dir, devices=1)
    two = validate(run_dir / "checkpoints" / "last.ckpt", data_dir, devices=2)
    assert one["world_size"] == 1 and two["world_size"] == 2
    for key in ("val/nll_bound", "val/recon", "val/kl"):
        assert two[key] == pytest.approx(one[key], abs=1e-4), key


def test_a_local_multirun_of_ddp_jobs_runs_each_job_on_its_own_ranks(mnist_dir, tmp_path):
    """Jobs run one after another in one process: the second must not mistake itself for a rank of the first."""
    sweep = tmp_path / "multirun"
    result = run_train(
        "-m",
        "T=2,3",
        *tiny_without("T"),
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        f"paths.data_dir={mnist_dir}",
        "logger=csv",
        "callbacks.pictures=null",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job, T in (("0", 2), ("1", 3)):
        assert (sweep / job / "ddp_rank_1.log").is_file()  # rank 1 of this job ran, in this job's folder
        hparams = yaml.safe_load((sweep / job / "csv" / "version_0" / "hparams.yaml").read_text())
        # Had rank 1 composed another T, DDP would have refused the mismatched parameter shapes.
        assert hparams["T"] == T and hparams["world_size"] == 2
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
