"""bench/train_step.py, as bench/gpu.sh runs it on a lent GPU: every engine in one process, each within a time
limit, the ratio against the textbook loop whichever order the engines ran in."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "bench" / "train_step.py"
TINY = ["--attention", "gaussian", "--batch", "4", "--T", "2", "--lstm", "16", "--latent", "4", "--steps", "2"]
TINY += ["--warmup", "0", "--in-process"]


def bench(tmp_path, *args):
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--json", str(out), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(out.read_text()) if out.exists() else []


@pytest.mark.slow
def test_engines_timed_before_the_textbook_loop_get_their_ratio_after_it(tmp_path):
    stdout, rows = bench(tmp_path, "--modes", "fused_loop", "textbook")
    by_mode = {row["mode"]: row for row in rows}
    assert set(by_mode) == {"fused_loop", "textbook"}
    assert by_mode["textbook"]["vs_baseline"] == 1.0
    expected = by_mode["fused_loop"]["images_per_s"] / by_mode["textbook"]["images_per_s"]
    assert by_mode["fused_loop"]["vs_baseline"] == pytest.approx(expected)
    assert f"vs textbook: fused_loop {expected:.2f}x" in stdout


@pytest.mark.slow
def test_an_engine_past_its_time_limit_is_reported_and_the_next_is_still_tried(tmp_path):
    # 0.05 s: too short for any training step with its model's construction, long enough to start
    stdout, rows = bench(tmp_path, "--modes", "textbook", "fused_loop", "--mode-timeout", "0.05")
    assert "textbook               timed out after 0.05 s (--mode-timeout)" in stdout
    assert "fused_loop             timed out after 0.05 s (--mode-timeout)" in stdout
    assert rows == []


@pytest.mark.slow
def test_check_gives_each_engine_its_error_against_the_textbook_loop_in_float64(tmp_path):
    stdout, rows = bench(tmp_path, "--modes", "textbook", "fused_loop", "--check")
    for row in rows:  # float32 against float64: rounding, not a different function
        assert abs(row["loss_error"]) < 1e-3 and 0 < row["gradient_error"] < 1e-4, row
    assert "grad err" in stdout
