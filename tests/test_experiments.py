"""The paper's other experiments as presets, run as the user runs them: cluttered-MNIST classification, two-digit
MNIST and CIFAR-10 generation (small files in the real formats, a few steps each)."""

import json

import pytest
from conftest import run_script, run_train, write_cifar10
from PIL import Image

pytestmark = pytest.mark.slow  # runs train.py, evaluate.py or sample.py as the user does

FEW_STEPS = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=2",
    "data.num_workers=0",
    "data.download=false",
    "logger=csv",
]


def test_cluttered_mnist_trains_evaluates_and_draws_its_glimpses(mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        "experiment=cluttered_mnist",
        "T=2",
        "lstm_size=16",
        "data.val_size=50",
        "data.batch_size=20",
        *FEW_STEPS,
        f"paths.data_dir={mnist_dir}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= summary["test"]["test/error"] <= 100
    assert summary["test"]["test/error"] == pytest.approx(100 - 100 * summary["test"]["test/accuracy"], abs=1e-3)
    assert summary["best_val/error"] is not None
    glimpses = next((run_dir / "pictures").glob("step*")) / "glimpses.png"
    assert Image.open(glimpses).size[0] > 100

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluated = run_script(
        "evaluate.py", f"ckpt_path={ckpt}", "limit_images=40", f"hydra.run.dir={tmp_path / 'e'}", cwd=tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    row = json.loads(ckpt.with_suffix(".eval.json").read_text())[0]
    assert row["images"] == 40 and 0 <= row["error"] <= 100 and row["loss"] > 0
    refused = run_script("evaluate.py", f"ckpt_path={ckpt}", "iw_samples=10", cwd=tmp_path)
    assert refused.returncode == 1 and "iw_samples=[10] is not allowed for a classifier" in refused.stderr
    drawn = run_script(
        "sample.py", f"ckpt_path={ckpt}", "reconstruct=4", f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path
    )
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert (tmp_path / "s" / "glimpses.png").is_file()


def test_a_classifier_without_attention_fails_before_any_work(mnist_dir, tmp_path):
    result = run_train("experiment=cluttered_mnist", "attention=none", f"paths.data_dir={mnist_dir}", cwd=tmp_path)
    assert result.returncode == 1
    assert "attention.type='none' is not allowed for the classifier" in result.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.ckpt"))


def test_two_digit_mnist_trains_and_tests_its_bound(mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        "experiment=two_digit_mnist",
        "T=2",
        "lstm_size=16",
        "latent_size=4",
        "data.val_size=50",
        "data.train_images=40",
        "data.val_images=10",
        "data.test_images=20",
        "data.batch_size=10",
        "model.engine=fused_loop",
        *FEW_STEPS,
        f"paths.data_dir={mnist_dir}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["test"]["test/nll_bound"] > 0
    samples = next((run_dir / "pictures").glob("step*")) / "samples.png"
    assert Image.open(samples).size[0] > 4 * 60  # a grid of 60×60 images


def test_cifar10_trains_with_colour_filters_and_reports_bits_per_dim(tmp_path):
    write_cifar10(tmp_path / "data")
    run_dir = tmp_path / "run"
    result = run_train(
        "experiment=cifar10_gaussian",
        "T=2",
        "lstm_size=16",
        "latent_size=4",
        "data.val_size=10",
        "data.verify=false",
        "data.batch_size=10",
        "model.engine=fused_loop",
        *FEW_STEPS,
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert test["test/nll_bound"] > 0 and 0 < test["test/bits_per_dim"] < 16
