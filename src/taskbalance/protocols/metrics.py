"""Split-level meters the method papers' benchmarks report and the dense study does not: MTAN-protocol depth
errors, classification accuracy and per-attribute F1. Segmentation and normals reuse the study's meters."""

from __future__ import annotations

import torch
from torch import Tensor

from taskbalance.conventions import INVALID_DEPTH
from taskbalance.tasks.metrics.base import BaseMeter

#: Probability threshold of a positive binary-attribute prediction (FAMO ``CelebaMetrics``: ``y_pred.gt(0.5)``).
POSITIVE_THRESHOLD = 0.5


class DepthErrorMeter(BaseMeter):
    """Absolute and relative depth error over the valid pixels (``d ≠ 0``) of the split.

    ``abs_err = Σ |d̂ − d| / N_valid`` and ``rel_err = Σ |d̂ − d| / d / N_valid`` (no clamping of ``d̂``), the
    ``depth_error`` of the MTAN repository (``lorenmt/mtan``) as used by CAGrad, Nash-MTL, FAMO, FairGrad and
    IMGrad. Those repositories average per-batch values over the test batches; we pool over every valid pixel of
    the split, which is independent of the batch size (identical when all batches hold as many valid pixels).
    """

    def reset(self) -> None:
        """Zero the pooled sums."""
        self.count = 0
        self.absolute = 0.0
        self.relative = 0.0

    def _update(self, pred: Tensor, target: Tensor) -> None:
        valid = target != INVALID_DEPTH
        d = target[valid].double()
        error = (pred[valid].double() - d).abs()
        self.count += int(valid.sum())
        self.absolute += float(error.sum())
        self.relative += float((error / d.abs()).sum())

    def _compute(self) -> dict[str, float]:
        self._require(self.count, "valid depth pixel")
        return {"abs_err": self.absolute / self.count, "rel_err": self.relative / self.count}


class AccuracyMeter(BaseMeter):
    """Classification accuracy (percent) of ``argmax`` over the B×C logits against B class labels.

    The metric of MultiMNIST (Sener & Koltun, NeurIPS 2018, ``isl-org/MultiObjectiveOptimization``).
    """

    def reset(self) -> None:
        """Zero the counts."""
        self.correct = 0
        self.total = 0

    def _update(self, pred: Tensor, target: Tensor) -> None:
        self.correct += int((pred.argmax(dim=1) == target).sum())
        self.total += target.numel()

    def _compute(self) -> dict[str, float]:
        self._require(self.total, "example")
        return {"accuracy": 100.0 * self.correct / self.total}


class BinaryF1Meter(BaseMeter):
    """F1 (percent) and accuracy (percent) of one binary attribute, predicted positive when ``σ(logit) > 0.5``.

    ``F1 = 2PR / (P + R + 1e-8)`` with ``P = TP / (TP + FP + 1e-8)`` and ``R = TP / (TP + FN + 1e-8)``, pooled over
    the split, exactly as FAMO's ``CelebaMetrics`` (``Cranial-XIX/FAMO experiments/celeba/trainer.py``), the
    metric of the CelebA tables of FAMO, FairGrad and IMGrad.
    """

    def reset(self) -> None:
        """Zero the confusion counts."""
        self.tp = self.fp = self.fn = self.tn = 0

    def _update(self, pred: Tensor, target: Tensor) -> None:
        positive = torch.sigmoid(pred.reshape(-1).double()) > POSITIVE_THRESHOLD
        truth = target.reshape(-1) > 0.5
        self.tp += int((positive & truth).sum())
        self.fp += int((positive & ~truth).sum())
        self.fn += int((~positive & truth).sum())
        self.tn += int((~positive & ~truth).sum())

    def _compute(self) -> dict[str, float]:
        total = self.tp + self.fp + self.fn + self.tn
        self._require(total, "example")
        eps = 1e-8
        precision = self.tp / (self.tp + self.fp + eps)
        recall = self.tp / (self.tp + self.fn + eps)
        f1 = 2 * precision * recall / (precision + recall + eps)
        return {"f1": 100.0 * f1, "accuracy": 100.0 * (self.tp + self.tn) / total}

