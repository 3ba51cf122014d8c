"""A repeated kill-and-resume trial (issue 15): train.py is killed with SIGKILL at random moments, in the middle of
checkpoint saves and in the middle of validation, then resumed with ``ckpt_path=last`` until it finishes. For
each kill it checks that every checkpoint left behind loads (``weights_only``, as train.py reads them), that the
resumed run ends at the uninterrupted run's step count with every epoch validated and no temporary file left, and
counts the optimiser steps lost (done before the kill, redone after the resume).

    python bench/kill_trial.py --data-dir ../shared/data --out /tmp/kill_trial [--random 12 --seed 0]

A small model on MNIST (4 epochs of 8 steps, last.ckpt every 3 steps, 4 validation batches, pictures every
epoch), so that each of the moments a long run passes through comes up in seconds."""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from draw_exp.checkpoints import CheckpointError, read_checkpoint  # noqa: E402

EPOCHS, STEPS_PER_EPOCH, INTERVAL = 4, 8, 3
TOTAL = EPOCHS * STEPS_PER_EPOCH
RUN = [
    "attention=gaussian",
    "T=4",
    "latent_size=8",
    "lstm_size=32",
    "attention.read_size=2",
    "attention.write_size=3",
    "data=mnist",
    "data.batch_size=25",
    "data.num_workers=0",
    "data.download=false",
    f"trainer.max_epochs={EPOCHS}",
    f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    f"callbacks.periodic_checkpoint.every_n_train_steps={INTERVAL}",
    "callbacks.pictures.every_n_epochs=1",
    "callbacks.pictures.num_images=16",
    "callbacks.pictures.animated=4",
    "logger=csv",
    "model.engine=fused_loop",
]
# kills at chosen moments: (name, killer callback overrides); saves are numbered in the order this process writes them
TARGETED = [
    (
        "mid-save, half written (save 1: periodic)",
        ["+callbacks.kill._target_=killer.KillDuringSave", "+callbacks.kill.save=1"],
    ),
    ("mid-save, half written (save 3)", ["+callbacks.kill._target_=killer.KillDuringSave", "+callbacks.kill.save=3"]),
    ("mid-save, half written (save 5)", ["+callbacks.kill._target_=killer.KillDuringSave", "+callbacks.kill.save=5"]),
    ("mid-save, half written (save 8)", ["+callbacks.kill._target_=killer.KillDuringSave", "+callbacks.kill.save=8"]),
    (
        "mid-save, before rename (save 2)",
        ["+callbacks.kill._target_=killer.KillDuringSave", "+callbacks.kill.save=2", "+callbacks.kill.at=rename"],
    ),
    (
        "mid-save, before rename (save 4)",
        ["+callbacks.kill._target_=killer.KillDuringSave", "+callbacks.kill.save=4", "+callbacks.kill.at=rename"],
    ),
    (
        "mid-save, before rename (save 7)",
        ["+callbacks.kill._target_=killer.KillDuringSave", "+callbacks.kill.save=7", "+callbacks.kill.at=rename"],
    ),
    ("validation start, epoch 0", ["+callbacks.kill._target_=killer.KillAtValidation", "+callbacks.kill.epoch=0"]),
    (
        "mid-validation, epoch 1 batch 2",
        ["+callbacks.kill._target_=killer.KillAtValidation", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=2"],
    ),
    (
        "mid-validation, epoch 2 batch 3",
        ["+callbacks.kill._target_=killer.KillAtValidation", "+callbacks.kill.epoch=2", "+callbacks.kill.batch=3"],
    ),
    (
        "mid-validation, epoch 3 batch 1",
        ["+callbacks.kill._target_=killer.KillAtValidation", "+callbacks.kill.epoch=3", "+callbacks.kill.batch=1"],
    ),
    ("step 5", ["+callbacks.kill._target_=killer.KillAtStep", "+callbacks.kill.step=5"]),
]


def train(run_dir: Path, *overrides: str, data_dir: str, kill_after: float | None = None):
    """train.py in ``run_dir``; with ``kill_after``, SIGKILL after that many seconds if still running."""
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "HYDRA_FULL_ERROR": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "scripts"), os.environ.get("PYTHONPATH", "")]),
    }
    steps = run_dir / "steps.log"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *RUN,
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        "+callbacks.step_log._target_=killer.StepLog",
        f"+callbacks.step_log.path={steps}",
        *overrides,
    ]
    process = subprocess.Popen(command, cwd=run_dir.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
    stderr = process.communicate()[1].decode(errors="replace")
    return process.returncode, stderr


def steps_done(run_dir: Path) -> int:
    path = run_dir / "steps.log"
    return int(path.read_text().split()[-1]) if path.exists() and path.read_text().split() else 0


def validated_epochs(run_dir: Path) -> set[int]:
    epochs = set()
    for metrics in (run_dir / "csv").glob("version_*/metrics.csv"):
        epochs |= {int(row["epoch"]) for row in csv.DictReader(metrics.open()) if row.get("val/nll_bound")}
    return epochs


def trial(name: str, run_dir: Path, data_dir: str, overrides: list[str], kill_after: float | None) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    rc, stderr = train(run_dir, *overrides, data_dir=data_dir, kill_after=kill_after)
    killed = rc == -signal.SIGKILL
    at_kill = steps_done(run_dir)
    files = sorted((run_dir / "checkpoints").glob("*.ckpt")) if (run_dir / "checkpoints").exists() else []
    loaded = 0
    for path in files:
        try:
            read_checkpoint(path)
            loaded += 1
        except CheckpointError as err:
            print(f"  {name}: {path.name} does not load: {err}", flush=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    resumed_from = read_checkpoint(last)["global_step"] if last.exists() else 0
    temporary = len(list(run_dir.glob("checkpoints/.*.tmp")))
    rc2, stderr2 = train(run_dir, *(["ckpt_path=last"] if last.exists() else []), data_dir=data_dir)
    final = read_checkpoint(last)["global_step"] if last.exists() else -1
    left = len(list(run_dir.glob("checkpoints/.*.tmp")))
    result = {
        "kill": name,
        "killed": killed,
        "step_at_kill": at_kill,
        "checkpoints": len(files),
        "loaded": loaded,
        "tmp_left_by_kill": temporary,
        "resumed_from": resumed_from,
        "steps_lost": at_kill - resumed_from,
        "resume_rc": rc2,
        "final_step": final,
        "all_epochs_validated": validated_epochs(run_dir) == set(range(EPOCHS)),
        "tmp_after_resume": left,
    }
    if not killed:
        print(f"  {name}: the run was not killed (rc {rc}): {stderr[-500:]}", flush=True)
    if rc2 != 0:
        print(f"  {name}: the resume failed (rc {rc2}): {stderr2[-1500:]}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="a folder with MNIST/raw (../shared/data)")
    parser.add_argument("--out", required=True, help="a scratch folder for the runs (replaced)")
    parser.add_argument("--random", type=int, default=12, help="kills at random moments, after the targeted ones")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    args.data_dir = str(Path(args.data_dir).resolve())  # the runs start in their own folders
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    start = time.monotonic()  # the uninterrupted run: its duration bounds the random kill times
    rc, stderr = train(out / "whole", data_dir=args.data_dir)
    duration = time.monotonic() - start
    assert rc == 0 and read_checkpoint(out / "whole" / "checkpoints" / "last.ckpt")["global_step"] == TOTAL, stderr
    print(f"uninterrupted run: {TOTAL} steps, {duration:.1f} s (start-up included)", flush=True)

    rng = random.Random(args.seed)
    plan = [(name, overrides, None) for name, overrides in TARGETED]
    plan += [(f"random, {t:.1f} s", [], t) for t in (rng.uniform(0.3, 1.0) * duration for _ in range(args.random))]
    results = []
    for i, (name, overrides, kill_after) in enumerate(plan):
        result = trial(name, out / f"kill{i:02d}", args.data_dir, overrides, kill_after)
        results.append(result)
        print(
            f"{i + 1:2d} {name:42s} killed {result['killed']!s:5s} at step {result['step_at_kill']:2d} "
            f"ckpts {result['loaded']}/{result['checkpoints']} loaded, tmp {result['tmp_left_by_kill']} "
            f"resumed from {result['resumed_from']:2d} (lost {result['steps_lost']}) -> rc {result['resume_rc']} "
            f"step {result['final_step']} all validated {result['all_epochs_validated']} "
            f"tmp {result['tmp_after_resume']}",
            flush=True,
        )
    kills = [r for r in results if r["killed"]]
    print(
        f"\n{len(kills)} kills of {len(results)} runs; checkpoints loaded: {sum(r['loaded'] for r in kills)} of "
        f"{sum(r['checkpoints'] for r in kills)}; resumes that reached step {TOTAL} with rc 0: "
        f"{sum(r['resume_rc'] == 0 and r['final_step'] == TOTAL for r in kills)} of {len(kills)}; every epoch "
        f"validated: {sum(r['all_epochs_validated'] for r in kills)} of {len(kills)}; steps lost at most "
        f"{max(r['steps_lost'] for r in kills)} (interval {INTERVAL}); temporary files left after the resume: "
        f"{sum(r['tmp_after_resume'] for r in kills)}"
    )


if __name__ == "__main__":
    main()
