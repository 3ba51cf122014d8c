"""training.py: what makes a run fail or refuse to start, and what it leaves behind."""

from pathlib import Path

import pytest
import torch
from test_config import compose_config

from draw_exp.errors import ConfigError
from draw_exp.training import RunFailedError, check_same_model, fail_unless_finite, set_matmul_precision


def test_resuming_a_checkpoint_of_another_model_size_names_both_sizes(tmp_path):
    cfg = compose_config("lstm_size=64", "T=8", tmp_path=tmp_path)
    checkpoint = {
        "hyper_parameters": {
            "T": 8,
            "latent_size": 100,
            "lstm_size": 256,
            "attention": {"type": "gaussian", "read_size": 2, "write_size": 5},
        }
    }
    with pytest.raises(ConfigError, match=r"lstm_size=256 in the checkpoint, 64 configured"):
        check_same_model(cfg, checkpoint, "run/last.ckpt")
    check_same_model(compose_config("lstm_size=256", "T=8", tmp_path=tmp_path), checkpoint, "run/last.ckpt")


def test_a_nan_test_metric_fails_the_run():
    fail_unless_finite({"test/nll_bound": 95.2, "test/kl": 20.1}, Path("metrics.json"))
    with pytest.raises(RunFailedError, match=r"test/nll_bound=nan"):
        fail_unless_finite({"test/nll_bound": float("nan"), "test/kl": 20.1}, Path("metrics.json"))


def test_float32_matmul_precision_is_applied_for_the_run(tmp_path):
    before = torch.get_float32_matmul_precision()
    try:
        set_matmul_precision(compose_config("float32_matmul_precision=high", tmp_path=tmp_path))
        assert torch.get_float32_matmul_precision() == "high"
        set_matmul_precision(compose_config(tmp_path=tmp_path))
        assert torch.get_float32_matmul_precision() == "highest"  # the default: full float32
    finally:
        torch.set_float32_matmul_precision(before)
