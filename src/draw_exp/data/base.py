"""What every image data set shares: splitting, binarisation, seeding, batching and workers."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from draw_exp.data.order import EpochShuffle, TrainLoader, batches_counted, order_state
from draw_exp.errors import check_choice, check_int_range

BINARIZE = ("dynamic", "threshold", "none")


def unpack_batch(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, indices)`` from a batch of :class:`ImageDataset`, or ``(images, None)`` from bare images."""
    return (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)


class ImageDataset(Dataset):
    """Images held in memory as uint8 ``[N, C, H, W]``, served as ``(image, index)``: float ``[C, H, W]`` in
    [0, 1] and the image's position in the split (evaluation draws its noise per image from it).

    ``binarize``: ``dynamic`` draws each pixel from Bernoulli(intensity) every time an image is served;
    ``threshold`` serves intensity > 0.5; ``none`` serves intensities. ``fixed_seed`` turns dynamic
    binarisation into one draw made up front, so that a validation or test set is the same every epoch.
    ``crop``: serve a ``crop``×``crop`` patch, at a random place (``random_crop``) or the centre.
    """

    def __init__(
        self,
        images: torch.Tensor,
        binarize: str = "dynamic",
        fixed_seed: int | None = None,
        crop: int | None = None,
        random_crop: bool = False,
    ):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        self.binarize = check_choice("data.binarize", binarize, BINARIZE)
        if crop is not None:
            check_int_range("data.crop", crop, 1, min(images.shape[2:]), "at most the stored image side")
        self.crop = crop
        self.random_crop = random_crop
        self.images = images
        if binarize == "dynamic" and fixed_seed is not None:
            generator = torch.Generator().manual_seed(fixed_seed)
            self.images = torch.bernoulli(images.float() / 255, generator=generator).to(torch.uint8) * 255
            self.binarize = "none"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.image(index), index

    def image(self, index: int) -> torch.Tensor:
        image = self.images[index]
        if self.crop is not None:
            (height, width), c = image.shape[1:], self.crop
            if self.random_crop:
                top, left = (int(torch.randint(0, side - c + 1, ())) for side in (height, width))
            else:
                top, left = (height - c) // 2, (width - c) // 2
            image = image[:, top : top + c, left : left + c]
        x = image.float() / 255
        if self.binarize == "dynamic":
            return torch.bernoulli(x)
        if self.binarize == "threshold":
            return (x > 0.5).float()
        return x


class LabelledImageDataset(ImageDataset):
    """An :class:`ImageDataset` served as ``(image, label)``, for classification; ``labels`` int64 ``[N]``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, **kwargs):
        super().__init__(images, **kwargs)
        if labels.shape != (len(images),):
            raise ValueError(f"{len(images)} images but labels of shape {tuple(labels.shape)}")
        self.labels = labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(index), self.labels[index]


class ImageDataModule(pl.LightningDataModule):
    """Base of every data set: subclasses set ``image_shape`` and implement :meth:`load_splits`.

    ``crop`` (set by subclasses that train on patches) serves random patches for training and centre patches
    for evaluation."""

    image_shape: tuple[int, int, int]
    default_likelihood = "bernoulli"  # what likelihood=auto picks for this data set

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 100,
        num_workers: int = 2,
        binarize: str = "dynamic",
        split_seed: int = 0,
        eval_seed: int = 1234,
        download: bool = True,
        pin_memory: bool = True,
    ):
        super().__init__()
        self.data_dir = str(data_dir)
        self.batch_size = check_int_range("data.batch_size", batch_size, 1)
        self.num_workers = check_int_range("data.num_workers", num_workers, 0)
        self.binarize = check_choice("data.binarize", binarize, BINARIZE)
        self.split_seed = check_int_range("data.split_seed", split_seed, 0)
        self.eval_seed = check_int_range("data.eval_seed", eval_seed, 0)
        self.download = download
        self.pin_memory = pin_memory
        self.datasets: dict[str, ImageDataset] = {}
        self.crop: int | None = None
        self.train_sampler: EpochShuffle | None = None
        self._resume_order: tuple[int, int] | None = None  # from a checkpoint: (seed, batches taken) of its epoch

    # --- files: subclasses name their folder and files, and how to fetch them ---
    name = "data"  # in messages
    source = ""  # where the files come from, in messages
    subfolder = ""  # the data set's folder under data_dir

    @property
    def folder(self) -> Path:
        return Path(self.data_dir).resolve() / self.subfolder

    def expected_files(self) -> list[str]:
        raise NotImplementedError

    def fetch(self) -> None:
        """Download the missing files (needs a network)."""
        raise NotImplementedError

    def missing_files(self) -> list[str]:
        return [f for f in self.expected_files() if not (self.folder / f).is_file()]

    def missing_message(self, how: str) -> str:
        return (
            f"{self.name} files missing in {self.folder}: {', '.join(self.missing_files())} (expected "
            f"{', '.join(self.expected_files())}{f', from {self.source}' if self.source else ''}). paths.data_dir, "
            f"or $DRAW_DATA_DIR, names the folder that holds {self.subfolder.split('/')[0]}/.{how}"
        )

    def require_files(self) -> None:
        if self.missing_files():
            raise FileNotFoundError(self.missing_message(" Run prepare_data() first, or copy the files there."))

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node: the only place that downloads.
        if self.missing_files() and self.download:
            # The folders a failed download would leave behind, empty: the data folder itself when mistyped.
            new_folders = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
            try:
                self.fetch()
            except Exception as err:  # offline: the download libraries raise many kinds
                for folder in new_folders:  # deepest first; a folder that holds anything stays
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()
                first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise FileNotFoundError(self.missing_message(f" Downloading failed: {first_line}")) from err
        if self.missing_files():
            raise FileNotFoundError(self.missing_message(" Set data.download=true where a network is available."))

    def load_splits(self) -> dict[str, torch.Tensor]:
        """Return uint8 ``[N, C, H, W]`` images for ``train``, ``val`` and ``test``."""
        raise NotImplementedError

    def random_split(self, images: torch.Tensor, val_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hold out ``val_size`` images, chosen by ``split_seed`` so the split is the same on every run."""
        check_int_range("data.val_size", val_size, 1, len(images) - 1, f"the training file holds {len(images)} images")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.split_seed))
        return images[order[val_size:]], images[order[:val_size]]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        splits = self.load_splits()
        self.datasets = {
            "train": ImageDataset(splits["train"], self.binarize, crop=self.crop, random_crop=True),
            # Evaluation sets are binarised once, so every epoch and every run scores the same images.
            "val": ImageDataset(splits["val"], self.binarize, fixed_seed=self.binarisation_seed("val"), crop=self.crop),
            "test": ImageDataset(
                splits["test"], self.binarize, fixed_seed=self.binarisation_seed("test"), crop=self.crop
            ),
        }

    def binarisation_seed(self, split: str) -> int | None:
        """The seed of ``split``'s one-off binarisation: evaluation sets are binarised once, training never."""
        return {"val": self.eval_seed, "test": self.eval_seed + 1}.get(split)

    def _loader(self, split: str, sampler=None) -> DataLoader:
        dataset = self.datasets[split]
        if sampler is None and self.trainer is not None and self.trainer.world_size > 1:
            # Each evaluation image on exactly one rank: Lightning's default sampler would repeat images to even out
            # the shards, and the bound would then not be the mean over the split. (Training shards are Lightning's.)
            sampler = UnrepeatedDistributedSampler(
                dataset, self.trainer.world_size, self.trainer.global_rank, shuffle=False
            )
        training = isinstance(sampler, EpochShuffle)
        return (TrainLoader if training else DataLoader)(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # An evaluation loader draws its workers' seed from a generator of its own: validating never moves the
            # global random state, so a run trains the same however often it validates (a stop's extra validation).
            generator=None if training else torch.Generator(),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        # A sampler of ours, not shuffle=True: its epoch's order goes in checkpoints (draw_exp.data.order).
        self.train_sampler = EpochShuffle(self.datasets["train"], self.batch_size)
        if self._resume_order is not None:
            seed, taken = self._resume_order
            # Lightning goes on with an epoch cut short, its count of the epoch's batches restored (after a crash, and
            # after a stop with callbacks.resume_state); where it begins a new epoch instead (a stop without it), the
            # rest of the order is that epoch, counted from zero. The offset is what its count leaves out either way:
            # a crash inside such an epoch restores a count that began at the stop.
            restarting = self.trainer is not None and self.trainer.fit_loop.restarting
            counted = batches_counted(self.trainer) if restarting else 0
            self.train_sampler.resume(seed, taken, offset=taken - counted)
            self._resume_order = None
        return self._loader("train", sampler=self.train_sampler)

    def state_dict(self) -> dict:
        return order_state(self.train_sampler, self.trainer)

    def load_state_dict(self, state_dict: dict) -> None:
        if "train_order_seed" in state_dict:
            self._resume_order = (state_dict["train_order_seed"], state_dict["train_batches_taken"])

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
