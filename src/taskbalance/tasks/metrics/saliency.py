"""Saliency maxF: the maximum over binarisation thresholds of the F-measure (two reference definitions)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.tasks.metrics.base import BaseMeter
from taskbalance.tasks.validation import InputCheck

MaxFDefinition = Literal["pooled", "per_image"]
_EPS = 1e-12


def maxf_thresholds(definition: MaxFDefinition) -> Tensor:
    """Thresholds on σ(pred): ``pooled`` 0.05, 0.10, …, 0.95 (ATRC); ``per_image`` ``linspace(0.2, 0.9, 15)`` (MTLP)."""
    if definition == "pooled":
        return torch.arange(1, 20, dtype=torch.float64) * 0.05
    return torch.linspace(0.2, 0.9, 15, dtype=torch.float64)


class SaliencyMeter(BaseMeter):
    """maxF of the saliency map ``σ(pred)`` against the binary label (255 ignored); reported as ``maxF`` in percent.

    ``definition="pooled"`` (default, ATRC ``MaxF``): a pixel is positive when ``σ(pred) ≥ t`` for
    ``t ∈ {0.05, …, 0.95}``; TP, predicted and actual positives are summed over the whole split;
    ``P = TP/PP``, ``R = TP/AP``, ``F_β = (1 + β²)·P·R / (β²·P + R)`` with ``β² = 0.3`` (0 where undefined);
    maxF = ``max_t F_β``. InvPT's ``eval_sal.py`` applies a second sigmoid to the probabilities; that variant is
    not reproduced (it only shifts which thresholds discriminate).

    ``definition="per_image"`` (MTLP ``SaliencyMeter``): ``σ(pred) > t`` for ``t ∈ linspace(0.2, 0.9, 15)``;
    per image ``P = TP/(TP + FP + 1e-12)``, ``R = TP/(TP + FN + 1e-12)``; P and R are averaged over images, then
    ``F_β = (1 + β²)·P̄·R̄ / (β²·P̄ + R̄ + 1e-12)`` with ``β² = 1``; maxF = ``max_t F_β``. Images without a
    labelled pixel are skipped. ``beta_squared`` overrides the definition's β².
    """

    def __init__(
        self, check: InputCheck, definition: MaxFDefinition = "pooled", beta_squared: float | None = None
    ) -> None:
        self.definition: MaxFDefinition = definition
        self.beta_squared = (0.3 if definition == "pooled" else 1.0) if beta_squared is None else beta_squared
        self.thresholds = maxf_thresholds(definition)
        super().__init__(check)

    def reset(self) -> None:
        """Zero the per-threshold accumulators."""
        size = self.thresholds.numel()
        self.true_pos = torch.zeros(size, dtype=torch.float64)
        self.pred_pos = torch.zeros(size, dtype=torch.float64)
        self.actual_pos = torch.zeros(size, dtype=torch.float64)
        self.precision_sum = torch.zeros(size, dtype=torch.float64)
        self.recall_sum = torch.zeros(size, dtype=torch.float64)
        self.images = 0

    def _update(self, pred: Tensor, target: Tensor) -> None:
        prob = torch.sigmoid(pred.double()).flatten(1)  # B×N
        labels = target.flatten(1)
        valid = labels != IGNORE_INDEX
        keep = valid.any(dim=1)
        prob, labels, valid = prob[keep], labels[keep], valid[keep]
        positive = (labels == 1) & valid
        thresholds = self.thresholds.to(prob.device)[:, None, None]  # T×1×1
        above = prob[None] >= thresholds if self.definition == "pooled" else prob[None] > thresholds
        above = above & valid[None]  # T×B×N
        tp = (above & positive[None]).sum(dim=2).double()  # T×B
        pp = above.sum(dim=2).double()
        ap = positive.sum(dim=1).double().expand_as(tp)
        if self.definition == "pooled":
            self.true_pos += tp.sum(dim=1).cpu()
            self.pred_pos += pp.sum(dim=1).cpu()
            self.actual_pos += ap.sum(dim=1).cpu()
        else:
            self.precision_sum += (tp / (pp + _EPS)).sum(dim=1).cpu()
            self.recall_sum += (tp / (ap + _EPS)).sum(dim=1).cpu()
        self.images += int(keep.sum())

    def _compute(self) -> dict[str, float]:
        self._require(self.images, "image with labelled pixels")
        b2 = self.beta_squared
        if self.definition == "pooled":
            precision = self.true_pos / self.pred_pos
            recall = self.true_pos / self.actual_pos
            f = (1 + b2) * precision * recall / (b2 * precision + recall)
            f = torch.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            precision = self.precision_sum / self.images
            recall = self.recall_sum / self.images
            f = (1 + b2) * precision * recall / (b2 * precision + recall + _EPS)
        return {"maxF": 100.0 * float(f.max())}
