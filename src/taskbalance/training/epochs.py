"""The training batches of one epoch from a position in it: what the loop core iterates over."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from taskbalance.training.batches import EpochBatchSampler


@dataclass
class EpochLoader:
    """An epoch's batches after the ones already trained on, from :class:`EpochBatchSampler` through a DataLoader.

    Args:
        dataset: the training split.
        sampler: its seeded, resumable batch sampler.
        num_workers, pin_memory: the DataLoader's.
        seed: the DataLoader's own generator is seeded with ``seed + epoch``, so loading draws nothing from the global
            RNG; None: the DataLoader draws its base seed from the global RNG (as the protocol runner always did).
        set_epoch: tell the dataset the epoch before loading it (``MultiTaskDataset.set_epoch``: augmentation is a
            function of the seed, the epoch and the item).
    """

    dataset: Dataset
    sampler: EpochBatchSampler
    num_workers: int = 0
    seed: int | None = None
    pin_memory: bool = False
    set_epoch: bool = False

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.sampler)

    def batches(self, epoch: int, skip: int) -> DataLoader:
        """The batches of ``epoch`` after the first ``skip``."""
        self.sampler.set_position(epoch, skip)
        if self.set_epoch:
            self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        generator = torch.Generator().manual_seed(self.seed + epoch) if self.seed is not None else None
        return DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers, generator=generator,
                          pin_memory=self.pin_memory)
