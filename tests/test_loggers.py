"""The W&B logger: offline without an account, and quiet about what the user cannot act on."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # starts a W&B offline run (W&B's service process)

OFFLINE_RUN = """
import sys
from draw_exp.loggers import wandb_logger
logger = wandb_logger(offline=True, project="draw-exp-test", save_dir=sys.argv[1])
logger.experiment.finish()
"""


def test_an_offline_run_prints_no_warning_about_wandbs_dropped_anonymous_setting(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WANDB_MODE": "offline"}  # not WANDB_SILENT: see it all
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_RUN, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list((tmp_path / "wandb").glob("offline-run-*"))
    assert "anonymous" not in result.stdout + result.stderr
