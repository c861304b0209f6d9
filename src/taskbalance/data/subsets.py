"""The paper's data-quantity settings: fewer scenes, or fewer scans (views) per scene (Section V-E).

Both draw a random but reproducible subset (a function of ``seed`` and the scene names only), so the same
setting always selects the same data, and a smaller fraction never selects data outside a larger one's
draw order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from taskbalance.data.base import DataError
from taskbalance.data.rng import mix_seed

__all__ = ["Amount", "resolve_amount", "select_scenes", "select_views"]

#: A subset size: a count (int ≥ 1) or a fraction of the total (float in (0, 1]).
Amount = int | float


def resolve_amount(amount: object, total: int, what: str) -> int:
    """Turn a count or fraction of ``total`` (an :data:`Amount`) into a count, with a clear error when it does not fit
    or is not an amount."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise DataError(f"{what} must be a count (int) or a fraction (float in (0, 1]), got {amount!r}")
    if isinstance(amount, float):
        if not 0.0 < amount <= 1.0:
            raise DataError(f"{what} as a fraction must be in (0, 1], got {amount}")
        return max(1, round(amount * total))
    if not 1 <= amount <= total:
        raise DataError(f"{what} must be between 1 and {total} (the number available), got {amount}")
    return amount


def _permutation(total: int, *seed_parts: int | str) -> list[int]:
    generator = torch.Generator().manual_seed(mix_seed(*seed_parts))
    return torch.randperm(total, generator=generator).tolist()


def select_scenes(scenes: Iterable[str], subset: Amount | Sequence[str] | None, seed: int) -> list[str]:
    """Scenes kept by ``subset``: None (all), a count or fraction (random, reproducible), or explicit names."""
    scenes = list(scenes)
    if subset is None:
        return scenes
    if isinstance(subset, (list, tuple)):
        unknown = sorted(set(subset) - set(scenes))
        if unknown:
            raise DataError(f"scene_subset names unknown scenes {unknown}; available: {scenes}")
        return [s for s in scenes if s in set(subset)]
    keep = resolve_amount(subset, len(scenes), "scene_subset")
    chosen = set(_permutation(len(scenes), seed, "scenes")[:keep])
    return [s for i, s in enumerate(scenes) if i in chosen]


def select_views(scene: str, views: Sequence[int], scans: Amount | None, seed: int) -> list[int]:
    """Views of ``scene`` kept by ``scans`` (per-scene count or fraction; None keeps all), in original order."""
    views = list(views)
    if scans is None:
        return views
    keep = resolve_amount(scans, len(views), "scans_per_scene")
    chosen = set(_permutation(len(views), seed, "scans", scene)[:keep])
    return [v for i, v in enumerate(views) if i in chosen]
