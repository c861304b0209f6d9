"""Edge meters: a fast approximate F-score for training-time validation, and the exact BSDS odsF meter."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.tasks.metrics.base import BaseMeter
from taskbalance.tasks.validation import InputCheck

#: Thresholds of the approximate F-score (0.01…0.99, as the reference protocol's 99).
APPROX_THRESHOLDS = torch.arange(1, 100, dtype=torch.float64) / 100.0


def tolerance_pixels(max_dist: float, height: int, width: int) -> int:
    """The matching radius in pixels, ``max(1, round(max_dist · sqrt(H² + W²)))``."""
    return max(1, round(max_dist * math.hypot(height, width)))


def _count_above(values: Tensor, thresholds: Tensor) -> Tensor:
    """For each threshold ``t_k``, how many ``values`` are strictly greater than ``t_k`` (float64, on the CPU)."""
    below = torch.bucketize(values.double(), thresholds.to(values.device))  # thresholds strictly below each value
    hist = torch.bincount(below.flatten(), minlength=thresholds.numel() + 1)[1:]
    return hist.flip(0).cumsum(0).flip(0).double().cpu()


class ApproxEdgeMeter(BaseMeter):
    """APPROXIMATE edge F-score (``approx_F``, percent) for cheap validation during training; *not* odsF.

    With ``p = σ(pred)`` and a square tolerance window of radius :func:`tolerance_pixels` (max-pooling), at each
    threshold ``t ∈ {0.01, …, 0.99}``: a pixel with ``p > t`` counts as a true positive when a GT edge lies in
    its window, a GT edge pixel counts as recalled when some ``p > t`` lies in its window. Counts are pooled over
    the split and ``approx_F = max_t 2PR/(P + R)``. There is no thinning, NMS or one-to-one matching, so thick
    predictions are not penalised and the value is usually above the exact odsF; use it to rank checkpoints
    of one run, never to report it as odsF. Pixels labelled 255 are ignored.
    """

    def __init__(self, check: InputCheck, max_dist: float) -> None:
        self.max_dist = max_dist
        super().__init__(check)

    def reset(self) -> None:
        """Zero the pooled per-threshold counts."""
        size = APPROX_THRESHOLDS.numel()
        self.matched_pred = torch.zeros(size, dtype=torch.float64)
        self.predicted = torch.zeros(size, dtype=torch.float64)
        self.recalled = torch.zeros(size, dtype=torch.float64)
        self.edges = 0.0

    def _update(self, pred: Tensor, target: Tensor) -> None:
        valid = target != IGNORE_INDEX
        edge = (target == 1) & valid
        prob = torch.where(
            valid, torch.sigmoid(pred.double()), torch.zeros((), dtype=torch.float64, device=pred.device)
        )
        r = tolerance_pixels(self.max_dist, pred.shape[-2], pred.shape[-1])
        near_edge = F.max_pool2d(edge.double(), 2 * r + 1, stride=1, padding=r) > 0
        near_prob = F.max_pool2d(prob, 2 * r + 1, stride=1, padding=r)
        self.predicted += _count_above(prob[valid], APPROX_THRESHOLDS)
        self.matched_pred += _count_above(prob[valid & near_edge], APPROX_THRESHOLDS)
        self.recalled += _count_above(near_prob[edge], APPROX_THRESHOLDS)
        self.edges += float(edge.sum())

    def _compute(self) -> dict[str, float]:
        self._require(self.edges, "ground-truth edge pixel")
        precision = torch.nan_to_num(self.matched_pred / self.predicted, nan=0.0)
        recall = self.recalled / self.edges
        f = torch.nan_to_num(2 * precision * recall / (precision + recall), nan=0.0)
        return {"approx_F": 100.0 * float(f.max())}


class ExactEdgeMeter(BaseMeter):
    """Exact odsF (percent) by the BSDS protocol of :mod:`taskbalance.tasks.metrics.edge_ods`.

    ``update`` stores ``round(255·σ(pred))`` as uint8 per image (the PNG the reference protocol reads, and 1 byte
    per pixel instead of 4) together with the uint8 label; ``compute`` runs the matching over all stored images
    in a process pool with a progress bar. Also reports the ODS ``threshold``, ``precision`` and ``recall``.
    """

    def __init__(
        self,
        check: InputCheck,
        max_dist: float,
        thresholds: int = 99,
        nms: bool = False,
        workers: int | None = None,
        progress: bool = True,
    ) -> None:
        self.max_dist = max_dist
        self.thresholds = thresholds
        self.nms = nms
        self.workers = workers
        self.progress = progress
        super().__init__(check)

    def reset(self) -> None:
        """Drop the stored maps."""
        self.predictions: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def _update(self, pred: Tensor, target: Tensor) -> None:
        quantised = torch.round(torch.sigmoid(pred.float()[:, 0]) * 255.0).to(torch.uint8).cpu().numpy()
        labels = target[:, 0].to(torch.uint8).cpu().numpy()
        self.predictions.extend(quantised)
        self.labels.extend(labels)

    def _compute(self) -> dict[str, float]:
        self._require(len(self.predictions), "image")
        from taskbalance.tasks.metrics.edge_ods import ods_f  # imports OpenCV/pyEdgeEval: only when evaluating

        result = ods_f(
            self.predictions,
            self.labels,
            max_dist=self.max_dist,
            thresholds=self.thresholds,
            nms=self.nms,
            workers=self.workers,
            progress=self.progress,
        )
        return {
            "odsF": 100.0 * result.ods_f,
            "threshold": result.threshold,
            "precision": 100.0 * result.precision,
            "recall": 100.0 * result.recall,
        }
