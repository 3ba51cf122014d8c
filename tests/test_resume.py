"""`ckpt_path=last` after a crash or a time-limit stop: model, optimiser, epoch, step, RNG, the epoch's order of
training images and the W&B run all continue."""

import os
import signal

import pytest
import torch
from conftest import ROOT, run_train, tiny_without, write_binarized_mnist, write_mnist

from draw_exp.checkpoints import slim_checkpoint
from draw_exp.curves import validation_curve

pytestmark = pytest.mark.slow  # runs train.py, evaluate.py or sample.py as the user does

# 150 training images in batches of 25: 6 steps an epoch, 12 in all; last.ckpt every 2 steps.
RUN = [
    *tiny_without("trainer.max_epochs", "trainer.limit_train_batches"),
    "trainer.max_epochs=2",
    "callbacks.periodic_checkpoint.every_n_train_steps=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]
INTERVAL, KILL_AT, TOTAL = 2, 9, 12
# tests/scripts/killer.py's callbacks, importable by the runs
KILLER = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "scripts"), os.environ.get("PYTHONPATH", "")])}


def last_ckpt(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)


def weights(checkpoint):
    return torch.cat([v.flatten() for v in checkpoint["state_dict"].values()])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("resume") / "data")


def train(run_dir, *overrides, data_dir, env=None, pictures=False):
    """train.py with RUN; ``pictures``: the default callbacks whole (pictures too), else without pictures."""
    return run_train(
        *RUN,
        *([] if pictures else ["callbacks.pictures=null"]),
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        *overrides,
        cwd=run_dir.parent,
        env=env,
    )


def train_killed(run_dir, killer, *overrides, data_dir, logger="csv"):
    """train.py with one of tests/scripts/killer.py's callbacks (``killer``: its class name, then its arguments as
    ``key=value``); the run must have died of its SIGKILL."""
    name, *arguments = killer.split()
    killed = train(
        run_dir,
        f"logger={logger}",
        f"+callbacks.kill._target_=killer.{name}",
        *(f"+callbacks.kill.{argument}" for argument in arguments),
        *overrides,
        data_dir=data_dir,
        env=KILLER,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    return killed


def test_a_run_killed_mid_epoch_resumes_to_the_same_step_count(data_dir, tmp_path):
    whole = train(tmp_path / "whole", "logger=csv", data_dir=data_dir)
    assert whole.returncode == 0, whole.stderr[-3000:]

    run_dir = tmp_path / "crashed"
    train_killed(run_dir, f"KillAtStep step={KILL_AT}", data_dir=data_dir, logger="wandb")
    at_kill = last_ckpt(run_dir)
    assert KILL_AT - INTERVAL <= at_kill["global_step"] < KILL_AT  # at most one checkpoint interval lost
    assert at_kill["epoch"] == 1  # mid-way through the second epoch

    stale = run_dir / "checkpoints" / ".last.ckpt.k1ll3d.tmp"  # as a kill during a save leaves it
    stale.write_bytes(b"half a checkpoint")
    resumed = train(run_dir, "logger=wandb", "ckpt_path=last", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not stale.exists()
    final = last_ckpt(run_dir)
    assert final["global_step"] == last_ckpt(tmp_path / "whole")["global_step"] == TOTAL
    assert not torch.equal(weights(final), weights(at_kill))  # it trained on from the checkpoint
    runs = sorted(p.name for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and runs[0].rsplit("-", 1)[1] == runs[1].rsplit("-", 1)[1]  # the same W&B run id, continued


def test_resuming_at_an_epoch_boundary_reproduces_the_uninterrupted_run(data_dir, tmp_path):
    """Two epochs in one go, or one epoch and then a resume for the second: the same weights, since the
    optimiser state, the RNG (batch order, noise) and the counters all come back. With the default callbacks,
    pictures included: they draw from a generator of their own."""
    assert train(tmp_path / "whole", "logger=csv", data_dir=data_dir, pictures=True).returncode == 0
    first = train(tmp_path / "split", "logger=csv", "trainer.max_epochs=1", data_dir=data_dir, pictures=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert last_ckpt(tmp_path / "split")["global_step"] == TOTAL // 2
    second = train(tmp_path / "split", "logger=csv", "ckpt_path=last", data_dir=data_dir, pictures=True)
    assert second.returncode == 0, second.stderr[-3000:]
    whole, split = last_ckpt(tmp_path / "whole"), last_ckpt(tmp_path / "split")
    assert split["global_step"] == whole["global_step"] == TOTAL
    torch.testing.assert_close(weights(split), weights(whole), rtol=0, atol=1e-6)
    for name in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(
            split["optimizer_states"][0]["state"][0][name],
            whole["optimizer_states"][0]["state"][0][name],
            rtol=0,
            atol=1e-6,
        )


# Binarized MNIST: fixed binary images, no random transform, so a resumed run can match an uninterrupted one weight for
# weight (dynamically binarised images are drawn afresh after a resume); 150 training images, as above.
BINARY = [
    *(o for o in RUN if o.split("=", 1)[0] not in ("data.val_size", "trainer.max_epochs")),
    "data=binarized_mnist",
    "data.verify=false",
    "logger=csv",
    "callbacks.pictures=null",
]


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    write_binarized_mnist(root / "data", sizes=(150, 25, 25))
    return root


def train_binary(run_dir, *overrides, root, epochs=2):
    """train.py on ``root``'s binarized MNIST with RUN's sizes, logging each step's images to <run_dir>.batches."""
    return run_train(
        *BINARY,
        f"trainer.max_epochs={epochs}",
        f"paths.data_dir={root / 'data'}",
        f"data.cache_dir={root / 'cache'}",
        f"hydra.run.dir={run_dir}",
        "+callbacks.batches._target_=killer.BatchLog",
        f"+callbacks.batches.path={run_dir}.batches",
        *overrides,
        cwd=run_dir.parent,
        env=KILLER,
    )


def batches(run_dir):
    """Each step's image indices; a step trained again after a resume counts as the resumed run trained it."""
    lines = (run_dir.parent / f"{run_dir.name}.batches").read_text().split("\n")
    return dict(line.split(" ", 1) for line in lines if line)


def validations(run_dir):
    """{step: validation bound} over every version of the run's CSV log (steps counted from 1)."""
    return {row["step"]: row["value"] for row in validation_curve(run_dir)}


def test_a_run_killed_mid_epoch_trains_on_as_the_uninterrupted_run(binary_dir, tmp_path):
    """Resumed from step 8, two batches into epoch 1: the rest of that epoch's order, image for image, and the same
    noise, so the same weights at the end."""
    whole = train_binary(tmp_path / "whole", root=binary_dir)
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "crashed"
    kill = ["+callbacks.kill._target_=killer.KillAtStep", "+callbacks.kill.step=9"]
    crashed = train_binary(run_dir, *kill, root=binary_dir)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert last_ckpt(run_dir)["global_step"] == 8
    resumed = train_binary(run_dir, "ckpt_path=last", root=binary_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr
    assert batches(run_dir) == batches(tmp_path / "whole") and len(batches(run_dir)) == TOTAL
    assert torch.equal(weights(last_ckpt(run_dir)), weights(last_ckpt(tmp_path / "whole")))


def test_a_run_stopped_mid_epoch_by_its_time_limit_trains_on_as_the_uninterrupted_run(binary_dir, tmp_path):
    """Stopped after step 9 as trainer.max_time stops a run (a validation, a checkpoint), and resumed: the rest of
    epoch 1's order (steps 10 to 12), and its validation at its end, as in the uninterrupted run, the same epoch
    budget (Lightning would count the cut epoch as done and begin a new one). Killed at step 11 and resumed from
    step 10, it goes on with the same order still. The stop's extra validation draws nothing from the global
    generator: the same weights and the same validation bound at step 12."""
    whole = train_binary(tmp_path / "whole", root=binary_dir)
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "stopped"
    stop = ["+callbacks.stop._target_=killer.StopAtStep", "+callbacks.stop.step=9"]
    assert train_binary(run_dir, *stop, root=binary_dir).returncode == 0
    assert last_ckpt(run_dir)["global_step"] == 9
    kill = ["+callbacks.kill._target_=killer.KillAtStep", "+callbacks.kill.step=11"]
    killed = train_binary(run_dir, "ckpt_path=last", *kill, root=binary_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert last_ckpt(run_dir)["global_step"] == 10
    resumed = train_binary(run_dir, "ckpt_path=last", root=binary_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert batches(run_dir) == batches(tmp_path / "whole") and len(batches(run_dir)) == TOTAL
    assert torch.equal(weights(last_ckpt(run_dir)), weights(last_ckpt(tmp_path / "whole")))
    assert set(validations(tmp_path / "whole")) == {6, 12}
    assert set(validations(run_dir)) == {6, 9, 12}  # 9: the stop's
    assert validations(run_dir)[12] == validations(tmp_path / "whole")[12]
    assert last_ckpt(run_dir)["epoch"] == last_ckpt(tmp_path / "whole")["epoch"]


def test_a_stop_resumed_without_resume_state_goes_on_with_the_cut_order_through_crashes_and_not_again(
    binary_dir, tmp_path
):
    """Without callbacks.resume_state, Lightning counts an epoch cut by a stop as done and begins a new one: the rest
    of the cut epoch's order is that epoch (steps 10-12). Killed in it at step 11 (resumed from 10), the uninterrupted
    run's images still; killed after it at step 13 (resumed from the checkpoint of its end, step 12), no batch of it
    trains again. (Without the callback the RNG states are not kept, so the orders after differ from the
    uninterrupted run's.)"""
    no_state = ["callbacks.resume_state=null"]
    whole = train_binary(tmp_path / "whole", root=binary_dir, epochs=4)
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "stopped"
    stop = ["+callbacks.stop._target_=killer.StopAtStep", "+callbacks.stop.step=9"]
    assert train_binary(run_dir, *no_state, *stop, root=binary_dir, epochs=4).returncode == 0
    for step, resumed_from in ((11, 10), (13, 12)):
        kill = ["+callbacks.kill._target_=killer.KillAtStep", f"+callbacks.kill.step={step}"]
        killed = train_binary(run_dir, *no_state, "ckpt_path=last", *kill, root=binary_dir, epochs=4)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert last_ckpt(run_dir)["global_step"] == resumed_from
    resumed = train_binary(run_dir, *no_state, "ckpt_path=last", root=binary_dir, epochs=4)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trained, uninterrupted = batches(run_dir), batches(tmp_path / "whole")
    assert [trained[str(s)] for s in range(1, 13)] == [uninterrupted[str(s)] for s in range(1, 13)]
    rest_of_cut_epoch = {trained[str(s)] for s in (10, 11, 12)}
    after = [trained[s] for s in trained if int(s) > 12]
    assert after and not rest_of_cut_epoch.intersection(after)


def test_ckpt_path_last_without_a_checkpoint_says_how_to_name_the_run(data_dir, tmp_path):
    result = train(tmp_path / "fresh", "logger=csv", "ckpt_path=last", data_dir=data_dir)
    assert result.returncode != 0
    assert "ckpt_path=last: no checkpoints/last.ckpt in the run folder" in result.stderr
    assert "hydra.run.dir=<run folder> ckpt_path=last" in result.stderr


def test_a_truncated_checkpoint_is_refused_by_name_before_training(data_dir, tmp_path):
    assert train(tmp_path / "run", "logger=csv", "trainer.max_epochs=1", data_dir=data_dir).returncode == 0
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.write_bytes(path.read_bytes()[:5000])
    result = train(tmp_path / "again", "logger=csv", f"ckpt_path={path}", data_dir=data_dir)
    assert result.returncode != 0
    assert f"ckpt_path='{path}'" in result.stderr and "truncated or corrupt" in result.stderr
    assert not (tmp_path / "again" / "checkpoints").exists()  # no work started


def test_a_run_killed_before_an_epochs_validation_validates_that_epoch_when_resumed(data_dir, tmp_path):
    """Step 6 ends epoch 0 and is a periodic-checkpoint step; a kill as epoch 0's validation starts must not lose
    that validation: the resumed run validates epoch 0 (and so can keep its best checkpoint) before epoch 1."""
    run_dir = tmp_path / "killed_in_validation"
    train_killed(run_dir, "KillAtValidation epoch=0", data_dir=data_dir)
    resumed = train(run_dir, "logger=csv", "ckpt_path=last", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {row["epoch"] for row in validation_curve(run_dir)} == {1, 2}  # epochs counted from 1
    assert last_ckpt(run_dir)["global_step"] == TOTAL


def test_init_from_starts_a_new_run_from_a_slim_checkpoints_weights(data_dir, tmp_path):
    """init_from: the weights of a checkpoint (a slim, shared one too), at step 0 with a fresh optimiser."""
    first = train(tmp_path / "first", "logger=csv", data_dir=data_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    slim = slim_checkpoint(tmp_path / "first" / "checkpoints" / "last.ckpt", tmp_path / "shared.ckpt")
    # one step at a negligible rate: the new run's weights must be the slim checkpoint's
    second = train(
        tmp_path / "second",
        "logger=csv",
        f"init_from={slim}",
        "trainer.max_steps=1",
        "model.lr=1e-12",
        data_dir=data_dir,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    started, continued = last_ckpt(tmp_path / "second"), torch.load(slim, weights_only=True)
    assert started["global_step"] == 1  # counted from 0, not from the first run's 12
    assert torch.allclose(weights(started), weights(continued), atol=1e-6)
    fresh = train(tmp_path / "fresh", "logger=csv", "trainer.max_steps=1", "model.lr=1e-12", data_dir=data_dir)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert not torch.allclose(weights(last_ckpt(tmp_path / "fresh")), weights(continued), atol=1e-3)


def test_init_from_a_missing_or_other_size_checkpoint_is_refused_by_name_before_any_work(data_dir, tmp_path):
    missing = train(tmp_path / "a", "logger=csv", f"init_from={tmp_path / 'nope.ckpt'}", data_dir=data_dir)
    assert missing.returncode != 0 and f"init_from='{tmp_path / 'nope.ckpt'}': no such checkpoint" in missing.stderr
    assert not (tmp_path / "a" / "checkpoints").exists()
    first = train(tmp_path / "b", "logger=csv", "trainer.max_steps=1", data_dir=data_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    other = train(
        tmp_path / "c",
        "logger=csv",
        f"init_from={tmp_path / 'b' / 'checkpoints' / 'last.ckpt'}",
        "lstm_size=8",
        data_dir=data_dir,
    )
    assert other.returncode != 0 and "lstm_size=16 in the checkpoint, 8 configured" in other.stderr
    assert not (tmp_path / "c" / "checkpoints").exists()
    # the same sizes, another likelihood (a learned scale the checkpoint lacks): named in one line, not a dump
    unfit = train(
        tmp_path / "d",
        "logger=csv",
        f"init_from={tmp_path / 'b' / 'checkpoints' / 'last.ckpt'}",
        "likelihood=discretized_logistic",
        data_dir=data_dir,
    )
    assert unfit.returncode == 1 and "does not fit the configured model" in unfit.stderr, unfit.stderr[-2000:]
    assert "Missing key(s)" in unfit.stderr and "Traceback" not in unfit.stderr
    assert not (tmp_path / "d" / "checkpoints").exists()


def test_a_run_killed_in_its_first_save_and_started_again_in_its_folder_leaves_no_temporary_file(data_dir, tmp_path):
    """Killed half-way through writing its first checkpoint, a run has no last.ckpt to resume: started again in
    the same folder, it removes the half-written temporary file (the folder is its own) and trains to the end."""
    run_dir = tmp_path / "killed_in_save"
    train_killed(run_dir, "KillDuringSave save=1", data_dir=data_dir)
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()
    assert len(list(run_dir.glob("checkpoints/.last.ckpt.*.tmp"))) == 1  # half a checkpoint, never renamed
    again = train(run_dir, "logger=csv", data_dir=data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list(run_dir.glob("checkpoints/.*.tmp"))
    assert last_ckpt(run_dir)["global_step"] == TOTAL
