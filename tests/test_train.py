"""train.py as the user runs it: a few real steps on small IDX files, through torchvision's loader."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_train, tiny_without, write_binarized_mnist

from draw_exp.lit_module import DrawModule

pytestmark = pytest.mark.slow  # runs train.py, evaluate.py or sample.py as the user does

LIMITS = ["trainer.max_steps=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=2"]


def last_metrics(run_dir: Path) -> dict[str, float]:
    rows = list(csv.DictReader((run_dir / "csv" / "version_0" / "metrics.csv").open()))
    merged = {}
    for row in rows:
        merged.update({k: float(v) for k, v in row.items() if v != ""})
    return merged


def test_train_end_to_end_with_gaussian_attention(mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(*TINY, f"paths.data_dir={mnist_dir}", "logger=csv", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in checkpoints} >= {"last.ckpt"} and len(checkpoints) == 2
    restored = DrawModule.load_from_checkpoint(checkpoints[0])
    assert restored.model.T == 2 and restored.model.attention.write_size == 3
    metrics = last_metrics(run_dir)
    assert math.isfinite(metrics["test/nll_bound"]) and metrics["test/nll_bound"] > 0
    assert metrics["test/nll_bound"] == pytest.approx(metrics["test/recon"] + metrics["test/kl"], rel=1e-4)
    assert {"train/loss_step", "train/recon_epoch", "val/nll_bound", "val/kl"} <= set(metrics)
    summary = json.loads((run_dir / "metrics.json").read_text())  # the final figures, whichever logger is on
    assert summary["test"]["test/nll_bound"] == pytest.approx(metrics["test/nll_bound"])
    assert summary["global_step"] == 3 and summary["best_val/nll_bound"] == pytest.approx(metrics["val/nll_bound"])
    assert len(summary["config_hash"]) == 12 and summary["wall_time_s"] > 0
    pictures = next((run_dir / "pictures").glob("step*"))
    for name in (
        "samples.png",
        "reconstructions.png",
        "drawing_samples.gif",
        "drawing_reconstructions.gif",
        "drawing_samples_strip.png",
        "kl_per_step.png",
        "kl_per_step.csv",
    ):
        assert (pictures / name).is_file(), name


@pytest.mark.parametrize(
    "command",
    [["attention=gaussian", "T=64"], ["attention=none", "T=16", "latent_size=10", "lstm_size=64"]],
    ids=["gaussian-T64", "none-T16"],
)
def test_the_readme_commands_run_with_wandb_offline(command, mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    data = [f"paths.data_dir={mnist_dir}", "data.val_size=50", "data.batch_size=10", "data.num_workers=0"]
    result = run_train(*command, *data, *LIMITS, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*"))  # the default logger, offline without an account
    assert (run_dir / "checkpoints" / "last.ckpt").exists()


def test_one_last_checkpoint_always_the_newest_state(mnist_dir, tmp_path):
    """Periodic saves and end-of-validation saves write the same last.ckpt (no last-v1.ckpt beside a stale one)."""
    run_dir = tmp_path / "run"
    result = run_train(
        *tiny_without("trainer.limit_train_batches"),
        "trainer.limit_train_batches=5",
        "trainer.max_epochs=2",
        "callbacks.periodic_checkpoint.every_n_train_steps=2",
        "callbacks.pictures=null",
        f"paths.data_dir={mnist_dir}",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in (run_dir / "checkpoints").glob("last*")] == ["last.ckpt"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10


def test_help_lists_the_groups(tmp_path):
    result = run_train("--help", cwd=tmp_path)
    assert result.returncode == 0
    for group in (
        "attention: gaussian, none",
        "experiment: cifar10_gaussian, cluttered_mnist, mnist_gaussian, mnist_none, smoke, svhn_gaussian, "
        "two_digit_mnist",
        "trainer: cpu, ddp, default, gpu",
        "logger: csv, wandb",
        "data: binarized_mnist, cifar10, cluttered_mnist, mnist, svhn, svhn_paper, two_digit_mnist",
        "model: classifier, draw",
        "callbacks:",
        "likelihood: auto, bernoulli, discretized_logistic",
    ):
        assert group in result.stdout, result.stdout


@pytest.mark.parametrize(
    "override,key",
    [
        ("T=0", "T"),
        ("latent_size=0", "latent_size"),
        ("lstm_size=-1", "lstm_size"),
        ("attention.read_size=0", "attention.read_size"),
        ("attention.write_size=29", "attention.write_size"),
        ("model.lr=0", "model.lr"),
        ("attention.type=foveal", "attention.type"),
    ],
)
def test_bad_values_fail_before_any_data_is_read(override, key, tmp_path):
    # The data folder does not exist: a config error must come first.
    result = run_train(
        "attention=gaussian",
        override,
        f"paths.data_dir={tmp_path / 'nowhere'}",
        "logger=csv",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert f"{key}=" in result.stderr and "not allowed" in result.stderr, result.stderr[-2000:]
    assert "MNIST" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # the error alone, nothing logged before it


def test_an_unknown_attention_option_lists_the_allowed_ones(tmp_path):
    result = run_train("attention=foveal", cwd=tmp_path)
    assert result.returncode != 0
    assert "attention" in result.stderr and "gaussian" in result.stderr and "none" in result.stderr


def test_missing_data_names_the_folder(tmp_path):
    result = run_train(
        *TINY, f"paths.data_dir={tmp_path / 'nowhere'}", "logger=csv", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode != 0
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in result.stderr and "train-images-idx3-ubyte" in result.stderr
    assert (tmp_path / "run" / "train.log").is_file()  # a folder named on the command line is never removed


def test_a_run_refused_before_any_work_leaves_no_run_folder(tmp_path):
    """With the default, time-stamped run folder: missing data (W&B logger on) leaves neither a run folder nor a
    W&B run; a run refused after others ran in the same root leaves theirs alone."""
    kept = tmp_path / "outputs" / "2026-01-01" / "00-00-00"
    (kept / ".hydra").mkdir(parents=True)  # another run's folder, as Hydra leaves it
    result = run_train(
        *TINY, f"paths.data_dir={tmp_path / 'nowhere'}", f"paths.output_root={tmp_path / 'outputs'}", cwd=tmp_path
    )
    assert result.returncode == 1 and "error: MNIST files missing" in result.stderr, result.stderr[-2000:]
    assert sorted(p.relative_to(tmp_path / "outputs") for p in (tmp_path / "outputs").glob("*/*")) == [
        kept.relative_to(tmp_path / "outputs")
    ]
    assert not list(tmp_path.rglob("wandb"))


def test_checkpoints_are_plain_and_load_without_code(mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        *TINY,
        f"paths.data_dir={mnist_dir}",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        "callbacks.pictures=null",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["attention"] == {"type": "gaussian", "read_size": 2, "write_size": 3}


def test_the_paper_preset_trains_on_binarized_mnist(tmp_path):
    write_binarized_mnist(tmp_path / "data")
    run_dir = tmp_path / "run"
    result = run_train(
        "experiment=mnist_gaussian",
        "T=2",
        "lstm_size=16",
        "latent_size=4",
        "data.verify=false",
        f"paths.data_dir={tmp_path / 'data'}",
        "data.batch_size=10",
        "data.num_workers=0",
        *LIMITS,
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = last_metrics(run_dir)
    assert 0 < metrics["test/nll_bound"] < 1000
