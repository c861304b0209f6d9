"""Depth errors pooled over every valid pixel of the split (RMSE, log-RMSE, abs-rel)."""

from __future__ import annotations

import math

from torch import Tensor

from taskbalance.conventions import INVALID_DEPTH
from taskbalance.tasks.metrics.base import BaseMeter

#: Predictions are clamped to at least this value before scoring (MTLP/ASTMT ``pred[pred <= 0] = 1e-9``).
MIN_DEPTH = 1e-9


class DepthMeter(BaseMeter):
    """Pooled depth errors, with ``d̂ = max(pred, 1e-9)`` and the sums over valid pixels (``d ≠ 0``) of the split.

    * ``rmse`` = ``sqrt(Σ (d̂ − d)² / N_valid)`` (MTLP's pooled definition, *not* ASTMT's mean of per-image RMSEs),
    * ``log_rmse`` = ``sqrt(Σ (ln d̂ − ln d)² / N_valid)`` (natural log),
    * ``abs_rel`` = ``Σ |d̂ − d| / d / N_valid``.

    The clamp follows MTLP; InvPT clamps at 0 instead, which changes RMSE by at most 1e-9.
    """

    def reset(self) -> None:
        """Zero the pooled sums."""
        self.count = 0
        self.squared = 0.0
        self.squared_log = 0.0
        self.relative = 0.0

    def _update(self, pred: Tensor, target: Tensor) -> None:
        valid = target != INVALID_DEPTH
        d = target[valid].double()
        d_hat = pred[valid].double().clamp_min(MIN_DEPTH)
        self.count += int(valid.sum())
        self.squared += float(((d_hat - d) ** 2).sum())
        self.squared_log += float(((d_hat.log() - d.log()) ** 2).sum())
        self.relative += float(((d_hat - d).abs() / d).sum())

    def _compute(self) -> dict[str, float]:
        self._require(self.count, "valid depth pixel")
        return {
            "rmse": math.sqrt(self.squared / self.count),
            "log_rmse": math.sqrt(self.squared_log / self.count),
            "abs_rel": self.relative / self.count,
        }
