"""Decoding rules shared by the real-dataset readers: raw arrays → targets in the conventions' format.

Each function validates what it decodes and raises :class:`DataError` naming ``path`` on bad content.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.data.base import DataError

__all__ = ["decode_binary", "decode_depth", "decode_labels", "decode_normals"]


def _plane(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise DataError(f"{path}: {what} must be a single-channel H×W map, got shape {array.shape}")
    return array


def decode_labels(
    array: np.ndarray, path: Path, num_classes: int, offset: int = 0, ignore: tuple[int, ...] = ()
) -> Tensor:
    """Class map → long H×W: stored values in ``ignore`` become IGNORE_INDEX, the others are shifted by
    ``-offset`` and must land in [0, num_classes)."""
    labels = torch.from_numpy(_plane(array, path, "a label map").astype(np.int64))
    ignored = torch.isin(labels, torch.tensor(ignore + (IGNORE_INDEX,), dtype=torch.long))
    labels = torch.where(ignored, IGNORE_INDEX, labels - offset)
    bad = ~ignored & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        values = sorted(set((labels[bad] + offset).tolist()))[:8]
        raise DataError(
            f"{path}: label values {values} are out of range (expected {offset}..{offset + num_classes - 1}"
            f"{', ignore ' + str(list(ignore)) if ignore else ''} or {IGNORE_INDEX}); wrong file or corrupt labels"
        )
    return labels


def decode_depth(array: np.ndarray, path: Path, scale: float = 1.0, invalid: float | None = None) -> Tensor:
    """Depth map (stored value × ``scale`` = metres) → float 1×H×W; NaN, inf and ``invalid`` become 0."""
    raw = _plane(array, path, "a depth map").astype(np.float64)
    bad = ~np.isfinite(raw) if invalid is None else ~np.isfinite(raw) | (raw == invalid)
    depth = np.where(bad, 0.0, raw * scale)
    if (depth < 0).any():
        raise DataError(f"{path}: depth has negative values (min {depth.min():.3g}); depth must be metres ≥ 0")
    return torch.from_numpy(depth).float()[None]


def decode_normals(
    array: np.ndarray, path: Path, from_uint8: bool, signs: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> Tensor:
    """Normal map H×W×3 (floats, or uint8 ``(n+1)·255/2``) → unit float 3×H×W; near-zero vectors are invalid (0)."""
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DataError(f"{path}: normals must be H×W×3, got shape {array.shape}")
    normals = torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1)
    if from_uint8:
        normals = normals * (2.0 / 255.0) - 1.0
    if not bool(torch.isfinite(normals).all()):
        raise DataError(f"{path}: normals contain NaN or infinite values")
    normals = normals * torch.tensor(signs, dtype=torch.float32).view(3, 1, 1)
    norm = normals.norm(dim=0, keepdim=True)
    return torch.where(norm > 0.5, normals / norm.clamp_min(1e-6), torch.zeros_like(normals))


def decode_binary(array: np.ndarray, path: Path, maximum: float) -> Tensor:
    """A binary map stored in [0, ``maximum``] → float 1×H×W in {0, 1} (threshold at half)."""
    values = _plane(array, path, "a binary map").astype(np.float32)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > maximum:
        raise DataError(f"{path}: values must lie in [0, {maximum:g}], found [{values.min():g}, {values.max():g}]")
    return torch.from_numpy((values > maximum / 2).astype(np.float32))[None]
