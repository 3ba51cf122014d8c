"""The training order: drawn as a shuffled DataLoader draws it, and resumable mid-epoch from its seed."""

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from draw_exp.data.order import EpochShuffle, TrainLoader, order_state

N, BATCH = 23, 5  # a last batch of 3


def dataset():
    return TensorDataset(torch.arange(N))


def epochs(loader, n=2):
    return [[batch[0].tolist() for batch in loader] for _ in range(n)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_order_and_the_global_generator_are_a_shuffled_dataloaders(num_workers):
    """Seeded runs keep the orders they had with ``shuffle=True``, and the draws after them."""
    workers = {"num_workers": num_workers, "persistent_workers": num_workers > 0}
    torch.manual_seed(7)
    plain = epochs(DataLoader(dataset(), batch_size=BATCH, shuffle=True, **workers))
    after_plain = torch.rand(3)
    torch.manual_seed(7)
    ours = epochs(TrainLoader(dataset(), batch_size=BATCH, sampler=EpochShuffle(dataset(), BATCH), **workers))
    assert ours == plain
    assert plain[0] != plain[1]  # a new order each epoch
    torch.testing.assert_close(torch.rand(3), after_plain, rtol=0, atol=0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_resumed_epoch_is_the_rest_of_its_order_and_draws_nothing(num_workers):
    torch.manual_seed(3)
    sampler = EpochShuffle(dataset(), BATCH)
    whole = epochs(TrainLoader(dataset(), batch_size=BATCH, sampler=sampler), 1)[0]
    seed = sampler.seed

    resumed = EpochShuffle(dataset(), BATCH)
    resumed.resume(seed, 2, offset=2)
    loader = TrainLoader(dataset(), batch_size=BATCH, sampler=resumed, num_workers=num_workers)
    state = torch.get_rng_state()
    rest = [batch[0].tolist() for batch in loader]
    assert rest == whole[2:] and len(rest) == 3
    assert torch.equal(torch.get_rng_state(), state)  # neither the order nor the iterator's worker seed drew
    assert (resumed.seed, resumed.offset) == (seed, 2)
    next_epoch = [batch[0].tolist() for batch in loader]
    assert sorted(i for batch in next_epoch for i in batch) == list(range(N))  # a new epoch, whole
    assert resumed.offset == 0 and resumed.seed != seed


def progress(processed, batches=5):
    """The parts of a Trainer that order_state reads."""
    current = SimpleNamespace(processed=processed)
    epoch_loop = SimpleNamespace(batch_progress=SimpleNamespace(current=current))
    return SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=epoch_loop), num_training_batches=batches)


def test_a_checkpoint_keeps_the_seed_and_the_batches_taken_only_mid_epoch():
    sampler = EpochShuffle(dataset(), BATCH)
    assert order_state(sampler, progress(2)) == {}  # no epoch drawn yet
    next(iter(sampler))
    assert order_state(sampler, progress(2)) == {"train_order_seed": sampler.seed, "train_batches_taken": 2}
    assert order_state(sampler, progress(0)) == {}
    assert order_state(sampler, progress(5)) == {}  # the epoch is over: the next draws a new order
    assert order_state(sampler, None) == {}
    assert order_state(torch.utils.data.RandomSampler(dataset()), progress(2)) == {}  # Lightning's, under DDP


def test_batches_taken_count_those_a_resumed_epoch_skipped_when_lightning_counts_from_zero():
    """After a time-limit stop Lightning begins a new epoch; the order's position is the skip plus its count."""
    sampler = EpochShuffle(dataset(), BATCH)
    sampler.resume(11, 2, offset=2)
    next(iter(sampler))
    assert order_state(sampler, progress(1)) == {"train_order_seed": 11, "train_batches_taken": 3}
    assert order_state(sampler, progress(3)) == {}  # 2 + 3: the order's five batches all taken
