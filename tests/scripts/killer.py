"""Callbacks for the resume tests and bench/kill_trial.py: the process kills itself with SIGKILL at a chosen moment,
as a crash or a pre-empted job would (no exception, no cleanup, no final checkpoint), or stops as a time limit stops
it; and logs of what each step trained on."""

import io
import os
import signal

import pytorch_lightning as pl

from draw_exp import checkpoints


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(pl.Callback):
    """SIGKILL after optimiser step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            die()


class StopAtStep(pl.Callback):
    """Stop after optimiser step ``step`` as ``trainer.max_time`` stops a run: mid-epoch, with a validation and a
    last checkpoint."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            trainer.should_stop = True


class KillAtValidation(pl.Callback):
    """SIGKILL in validation of epoch ``epoch`` (after that epoch's training), as its batch ``batch`` starts
    (0: as validation starts)."""

    def __init__(self, epoch: int, batch: int = 0):
        self.epoch, self.batch = epoch, batch

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            die()


class KillDuringSave(pl.Callback):
    """SIGKILL inside checkpoint save number ``save`` (1-based, every file this process writes through
    draw_exp.checkpoints.write_atomically): ``at=write`` after half of the file's bytes reached its temporary file,
    ``at=rename`` with the whole temporary file written and flushed, before it is renamed over the old one."""

    def __init__(self, save: int, at: str = "write"):
        assert at in ("write", "rename"), at
        real = checkpoints.write_atomically
        count = 0

        def write_and_die(path, write):
            nonlocal count
            count += 1
            if count != save:
                return real(path, write)

            def half_then_die(f):
                if at == "write":
                    data = _bytes_of(write)
                    f.write(data[: len(data) // 2])
                    f.flush()
                    die()
                write(f)

            fsync = os.fsync

            def fsync_then_die(fd):
                fsync(fd)
                die()

            if at == "rename":
                os.fsync = fsync_then_die  # the process dies in it: nothing else will call it
            return real(path, half_then_die)

        checkpoints.write_atomically = write_and_die


def _bytes_of(write) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


class StepLog(pl.Callback):
    """Appends each optimiser step's number to ``path`` as it ends (the step a kill interrupted is the last + 1)."""

    def __init__(self, path: str):
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(self.path, "a") as f:
            f.write(f"{trainer.global_step}\n")


class BatchLog(pl.Callback):
    """Appends each optimiser step's number and its batch's image indices to ``path``, a line a step."""

    def __init__(self, path: str):
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(self.path, "a") as f:
            f.write(f"{trainer.global_step} {' '.join(map(str, batch[1].tolist()))}\n")
