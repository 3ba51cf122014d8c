"""The training set's shuffled order, kept in checkpoints so that a run resumed mid-epoch trains on the rest of it.

Lightning restores a mid-epoch checkpoint's model, optimiser and counters (a crash, a pre-empted job, or a run stopped
by ``trainer.max_time``), but a plain shuffled DataLoader draws a new order when iterated again: the resumed run would
train on some of the epoch's images twice and on others not at all, and after a time-limit stop its validations would
fall at other steps than an uninterrupted run's. Here the epoch's order is drawn from a seed that the DataModule's
state keeps, with how many of its batches were trained on, and the resumed run's first epoch is the rest of that order.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, RandomSampler


class EpochShuffle(RandomSampler):
    """RandomSampler's order, drawn as RandomSampler draws it (one number from the global generator as an epoch
    starts, so seeded runs keep their orders), with the epoch's seed kept in ``seed``. After ``resume(seed, skip)``
    the next epoch is the order of ``seed`` less its first ``skip`` batches of ``batch_size``, and draws nothing
    from the global generator. ``offset``: how many batches of the current order Lightning's count of the epoch's
    batches leaves out (it counts from zero in a new epoch, from where it was in an epoch it goes on with)."""

    def __init__(self, data_source, batch_size: int):
        super().__init__(data_source)
        self.batch_size = batch_size
        self.seed: int | None = None  # the current epoch's; None before the first
        self.offset = 0
        self._resume: tuple[int, int, int] | None = None

    def resume(self, seed: int, skip: int, offset: int) -> None:
        self._resume = (seed, skip, offset)

    @property
    def resuming(self) -> bool:
        return self._resume is not None

    def __iter__(self):
        if self._resume is None:
            self.seed, skip, self.offset = int(torch.empty((), dtype=torch.int64).random_().item()), 0, 0
        else:
            (self.seed, skip, self.offset), self._resume = self._resume, None
        order = torch.randperm(len(self.data_source), generator=torch.Generator().manual_seed(self.seed))
        yield from order[skip * self.batch_size :].tolist()


class TrainLoader(DataLoader):
    """A DataLoader whose resumed first epoch leaves the global generator as the checkpoint left it: a new iterator
    draws its workers' base seed from it, a draw an uninterrupted run does not make in mid-epoch."""

    def __iter__(self):
        if not (isinstance(self.sampler, EpochShuffle) and self.sampler.resuming):
            return super().__iter__()
        state = torch.get_rng_state()
        iterator = super().__iter__()
        torch.set_rng_state(state)
        return iterator


def batches_counted(trainer) -> int:
    """Lightning's count of the current epoch's training batches: restored with the loops on a resume, from zero in
    an epoch it begins."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def order_state(sampler, trainer) -> dict:
    """What a checkpoint saved now needs to go on with the epoch's order: its seed and the batches trained on. Empty
    where there is nothing to go on with: no epoch drawn by an :class:`EpochShuffle` (Lightning puts its own sampler
    in under DDP), or the epoch finished (the next draws a new order, as in an uninterrupted run)."""
    if not isinstance(sampler, EpochShuffle) or sampler.seed is None or trainer is None:
        return {}
    taken = sampler.offset + batches_counted(trainer)
    if not 0 < taken < trainer.num_training_batches:
        return {}
    return {"train_order_seed": sampler.seed, "train_batches_taken": taken}
