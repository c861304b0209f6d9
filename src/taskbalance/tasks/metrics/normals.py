"""Surface-normal angular errors pooled over every valid pixel of the split."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from taskbalance.tasks.metrics.base import BaseMeter
from taskbalance.tasks.validation import InputCheck

#: Thresholds (degrees) of the "% within" metrics.
WITHIN_DEGREES: tuple[float, ...] = (11.25, 22.5, 30.0)
#: Bin width (degrees) of the angle histogram the median is read from.
MEDIAN_BIN_DEGREES = 1e-3
_BINS = int(round(180.0 / MEDIAN_BIN_DEGREES))


def angular_error_degrees(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel angle (degrees) between B×3×H×W vector fields, both L2-normalised first.

    Uses the numerically stable ``θ = 2·atan2(‖p − g‖, ‖p + g‖)`` of ATRC/InvPT instead of ``acos(p·g)``, which
    loses precision near 0° and 180°. A zero prediction normalises to the zero vector and scores 90°.
    """
    p = F.normalize(pred.double(), p=2, dim=1)
    g = F.normalize(target.double(), p=2, dim=1)
    return torch.rad2deg(2.0 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))


def quantize_like_png(normals: Tensor) -> Tensor:
    """Round-trip unit normals through the uint8 PNG encoding ``round((n + 1)·255/2)`` of MTLP's file-based eval."""
    codes = torch.round((F.normalize(normals, p=2, dim=1) + 1.0) * 255.0 / 2.0)
    return codes * 2.0 / 255.0 - 1.0


class NormalsMeter(BaseMeter):
    """Angular errors θ (see :func:`angular_error_degrees`) over valid pixels (label not the all-zero vector).

    Reported: ``mean`` (mErr, the paper's metric), ``median``, ``rmse`` = ``sqrt(mean θ²)``, and ``within_11.25``,
    ``within_22.5``, ``within_30`` = percent of pixels with ``θ < t`` (MTLP ``eval_normals.py``). Sums are exact;
    the median is read from a histogram with bins of 0.001°, i.e. it is exact to within 0.0005° (storing every
    angle of a split would need gigabytes). With ``quantize_png=True`` predictions first go through
    :func:`quantize_like_png`, as in MTLP's published file-based protocol.
    """

    def __init__(self, check: InputCheck, quantize_png: bool = False) -> None:
        self.quantize_png = quantize_png
        super().__init__(check)

    def reset(self) -> None:
        """Zero the sums and the histogram."""
        self.count = 0
        self.total = 0.0
        self.squared = 0.0
        self.within = [0] * len(WITHIN_DEGREES)
        self.histogram = torch.zeros(_BINS, dtype=torch.long)

    def _update(self, pred: Tensor, target: Tensor) -> None:
        if self.quantize_png:
            pred = quantize_like_png(pred)
        valid = (target != 0).any(dim=1)
        theta = angular_error_degrees(pred, target)[valid]
        self.count += theta.numel()
        self.total += float(theta.sum())
        self.squared += float((theta**2).sum())
        for i, t in enumerate(WITHIN_DEGREES):
            self.within[i] += int((theta < t).sum())
        bins = (theta / MEDIAN_BIN_DEGREES).long().clamp_(0, _BINS - 1)
        self.histogram += torch.bincount(bins, minlength=_BINS).cpu()

    def _median(self) -> float:
        cumulative = self.histogram.cumsum(0)
        # np.median convention: the mean of the two middle order statistics when the count is even.
        low = int(torch.searchsorted(cumulative, (self.count + 1) // 2))
        high = int(torch.searchsorted(cumulative, self.count // 2 + 1))
        return (low + high + 1) * MEDIAN_BIN_DEGREES / 2.0

    def _compute(self) -> dict[str, float]:
        self._require(self.count, "valid normal pixel")
        metrics = {
            "mean": self.total / self.count,
            "median": self._median(),
            "rmse": math.sqrt(self.squared / self.count),
        }
        for t, n in zip(WITHIN_DEGREES, self.within):
            metrics[f"within_{t:g}"] = 100.0 * n / self.count
        return metrics
