"""mIoU and pixel accuracy from a confusion matrix accumulated over the whole split (semseg, human parts)."""

from __future__ import annotations

import torch
from torch import Tensor

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.tasks.metrics.base import BaseMeter
from taskbalance.tasks.validation import InputCheck


class SegmentationMeter(BaseMeter):
    """Confusion matrix of ``argmax(pred)`` against the label over every labelled pixel of the split.

    Reported (percent):

    * ``mIoU`` = mean over *all* ``C`` classes of ``TP_c / (TP_c + FP_c + FN_c)``. A class whose union is empty
      (never labelled and never predicted in the split) scores 0 and stays in the mean, exactly as the reference
      code (MTLP/ASTMT ``eval_semseg.py``: ``tp / max(tp + fp + fn, 1e-8)`` then ``np.mean`` over classes).
    * ``pixel_acc`` = ``Σ_c TP_c / N_labelled``.

    Pixels labelled 255 are ignored. With ``skip_trivial_images=True`` (human parts) an image whose label holds a
    single value that is 0 (all background) or 255 (unlabelled) is skipped entirely, as MTLP's
    ``eval_human_parts.py`` does (``len(np.unique(gt)) == 1 and uniq[0] in (0, 255)``); the rule reads the label as
    given, so evaluate at native resolution (no padding) to match the reference image-for-image.
    """

    def __init__(self, check: InputCheck, num_classes: int, skip_trivial_images: bool = False) -> None:
        self.num_classes = num_classes
        self.skip_trivial_images = skip_trivial_images
        super().__init__(check)

    def reset(self) -> None:
        """Zero the confusion matrix."""
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def _update(self, pred: Tensor, target: Tensor) -> None:
        labels = target.long()
        if self.skip_trivial_images:
            flat = labels.flatten(1)
            single = (flat == flat[:, :1]).all(dim=1)
            trivial = single & ((flat[:, 0] == 0) | (flat[:, 0] == IGNORE_INDEX))
            pred, labels = pred[~trivial], labels[~trivial]
        predicted = pred.argmax(dim=1)
        valid = labels != IGNORE_INDEX
        index = labels[valid] * self.num_classes + predicted[valid]
        counts = torch.bincount(index, minlength=self.num_classes**2)
        self.confusion += counts.view(self.num_classes, self.num_classes).cpu()

    def _compute(self) -> dict[str, float]:
        confusion = self.confusion.double()
        total = float(confusion.sum())
        self._require(total)
        tp = confusion.diagonal()
        union = confusion.sum(dim=0) + confusion.sum(dim=1) - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.zeros_like(tp))
        return {"mIoU": 100.0 * float(iou.mean()), "pixel_acc": 100.0 * float(tp.sum()) / total}
