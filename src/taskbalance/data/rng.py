"""Worker-safe random streams for augmentation.

One :class:`torch.Generator` per process: in the main process it is seeded once (the dataset's
``augment_seed`` or ``torch.initial_seed()``) and advances across epochs; inside a DataLoader worker it is
reseeded from that worker's seed (different per worker and per epoch, reproducible under
``torch.manual_seed``), so two workers never produce the same augmentation.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch.utils.data import get_worker_info

__all__ = ["AugmentationRNG", "mix_seed"]

_MASK = (1 << 63) - 1


def mix_seed(*parts: int | str) -> int:
    """A 63-bit seed determined by ``parts`` (stable across processes and Python runs, unlike ``hash``)."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        value = part if isinstance(part, int) else int.from_bytes(hashlib.blake2b(part.encode(), digest_size=8).digest(), "little")
        state ^= value & _MASK
        state = (state * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
        state ^= state >> 31
    return state


class AugmentationRNG:
    """Hands out the generator of the current process (see the module docstring)."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._owner: tuple[int, int] | None = None

    def generator(self) -> torch.Generator:
        """The generator to draw this item's augmentation from."""
        info = get_worker_info()
        owner = None if info is None else (info.id, info.seed)
        if self._generator is None or owner != self._owner:
            base = torch.initial_seed() if self.seed is None else self.seed
            seed = base if info is None else mix_seed(base, info.seed)
            self._generator = torch.Generator().manual_seed(seed & _MASK)
            self._owner = owner
        return self._generator

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed, "_generator": None, "_owner": None}
