"""Thin boundary maps from label maps (one pixel wide, marked on the top/left side of each boundary)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["label_boundaries", "neighbour_mask"]


def neighbour_mask(values: Tensor, differs: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Bool mask (same shape as ``values``, last two dims H×W) of pixels that ``differ`` from their right or
    lower neighbour. Marking one side only keeps boundaries one pixel thin."""
    mask = torch.zeros(values.shape, dtype=torch.bool)
    mask[..., :, :-1] |= differs(values[..., :, :-1], values[..., :, 1:])
    mask[..., :-1, :] |= differs(values[..., :-1, :], values[..., 1:, :])
    return mask


def label_boundaries(labels: Tensor) -> Tensor:
    """Pixels whose label differs from the right or lower neighbour (the Context-edge rule of ASTMT, thinned)."""
    return neighbour_mask(labels, torch.ne)
