"""Reproducible random streams for augmentation.

Item ``index`` of epoch ``epoch`` draws its augmentation from a fresh :class:`torch.Generator` seeded by a mix of
(augmentation seed, epoch, index), so an item's augmentation depends on nothing else: not on the DataLoader
worker that loads it, the order items are loaded in, or whether the run was interrupted and resumed. Different
items (hence different workers) and different epochs draw different augmentations.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["AugmentationRNG", "mix_seed"]

_MASK = (1 << 63) - 1


def mix_seed(*parts: int | str) -> int:
    """A 63-bit seed determined by ``parts`` (stable across processes and Python runs, unlike ``hash``)."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        value = (
            part
            if isinstance(part, int)
            else int.from_bytes(hashlib.blake2b(part.encode(), digest_size=8).digest(), "little")
        )
        state ^= value & _MASK
        state = (state * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
        state ^= state >> 31
    return state


class AugmentationRNG:
    """Hands out each item's generator for the current epoch (see the module docstring).

    Args:
        seed: the augmentation seed; ``None`` takes ``torch.initial_seed()`` now, so a ``torch.manual_seed``
            before construction makes the augmentation repeatable.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = torch.initial_seed() if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations :meth:`generator` draws."""
        self.epoch = epoch

    def generator(self, index: int) -> torch.Generator:
        """The generator of item ``index``'s augmentation in the current epoch."""
        return torch.Generator().manual_seed(mix_seed(self.seed, "augment", self.epoch, index))
