"""The loop's position and accumulators (saved in every checkpoint), and seeding."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class LoopState:
    """Where the loop is, and what it has accumulated: the step, the epoch and the batches done in it, the best
    selection score and its step, the selection reference, the sums of the method's weights and the training time."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float | None = None
    best_step: int | None = None
    reference: dict[str, float] | None = None
    weight_sums: dict[str, float] = field(default_factory=dict)
    weight_count: int = 0
    train_seconds: float = 0.0

    def mean_weights(self) -> dict[str, float]:
        """The method's weight of each task averaged over the steps so far (the sums over at least one step)."""
        return {t: v / max(self.weight_count, 1) for t, v in self.weight_sums.items()}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
