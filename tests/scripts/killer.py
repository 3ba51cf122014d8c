"""A callback for the resume tests: the process kills itself with SIGKILL after optimiser step ``step``,
mid-epoch, as a crash or a pre-empted job would (no exception, no cleanup, no final checkpoint)."""

import os
import signal

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillAtValidation(pl.Callback):
    """SIGKILL as validation of epoch ``epoch`` starts (after that epoch's training, before its validation)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
