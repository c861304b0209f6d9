"""Deterministic, resumable batching: epoch ``e`` shuffles with seed ``seed + e``, so a resumed run can skip
exactly the batches it already trained on. Under DDP each rank takes every ``world_size``-th index (the
``DistributedSampler`` scheme, with the incomplete tail dropped so every rank sees as many batches)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Sampler


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of shuffled indices for one epoch, starting after ``skip`` batches.

    Args:
        size: dataset length.
        batch_size: per-rank batch size (incomplete last batches are dropped).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        rank, world_size: the shard this process reads.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if size < batch_size * world_size:
            raise ValueError(
                f"the training split has {size} items, fewer than one batch ({batch_size} × {world_size} ranks)"
            )
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0

    def set_position(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch and how many of its batches to skip (resume)."""
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        """Batches per epoch (independent of ``skip``)."""
        return self.size // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        per_rank = len(self) * self.batch_size
        shard = order[self.rank :: self.world_size][:per_rank].tolist()
        for start in range(self.skip * self.batch_size, per_rank, self.batch_size):
            yield shard[start : start + self.batch_size]


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move every tensor of a collated batch to ``device`` (other entries, e.g. ``meta``, stay as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
