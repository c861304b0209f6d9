"""The tasks of the method papers' benchmarks as :class:`~taskbalance.tasks.TaskSpec` objects.

* MTAN protocol (NYUv2 3-task, Cityscapes 2-task; ``lorenmt/mtan`` and the CAGrad / Nash-MTL / FAMO / FairGrad /
  IMGrad code built on it): ``semseg`` is the study's task (CE over labelled pixels, split-level mIoU and pixel
  accuracy; the loaders map MTAN's ignore label −1 to 255), ``depth`` is L1 over valid pixels scored by absolute /
  relative error, ``normals`` is the cosine loss ``1 − mean_valid n̂·n`` scored by the angle statistics.
* Classification (MultiMNIST digits, Sener & Koltun 2018): softmax cross-entropy on B×10 logits, accuracy.
* Multi-label (CelebA attributes, FAMO / FairGrad / IMGrad): one logit per attribute, binary cross-entropy, F1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from taskbalance.conventions import TASK_LABELS
from taskbalance.protocols.metrics import AccuracyMeter, BinaryF1Meter, DepthErrorMeter
from taskbalance.tasks import TaskError, TaskSpec, build_task
from taskbalance.tasks.losses import TaskLoss, depth_l1_loss
from taskbalance.tasks.metrics import NormalsMeter
from taskbalance.tasks.validation import InputCheck

#: Metrics of the normals task in the papers' tables (the study's meter also reports ``rmse``).
NORMALS_METRICS: tuple[str, ...] = ("mean", "median", "within_11.25", "within_22.5", "within_30")
#: Label value no classification label takes: nothing is ignored in these tasks.
NO_IGNORE = float("nan")


@dataclass(frozen=True)
class VectorCheck(InputCheck):
    """The input check of a per-image task: B×``channels`` floating logits and B labels.

    ``labels="classes"``: integer labels in ``[0, num_classes)``; ``labels="binary"``: floating labels in {0, 1}.
    """

    def __call__(self, pred: Tensor, target: Tensor) -> None:
        """Raise :class:`TaskError` unless ``pred`` and ``target`` form a valid batch of this task."""
        if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
            raise TaskError(
                self.task,
                f"prediction and label must be tensors, got {type(pred).__name__} and {type(target).__name__}",
            )
        if pred.dim() != 2 or pred.shape[1] != self.channels or not pred.is_floating_point():
            raise TaskError(
                self.task, f"prediction must be floating B×{self.channels} logits, got {pred.dtype} {tuple(pred.shape)}"
            )
        if target.shape != pred.shape[:1]:
            raise TaskError(
                self.task, f"label must have shape ({pred.shape[0]},) (one per image), got {tuple(target.shape)}"
            )
        if self.labels == "classes":
            if target.is_floating_point() or target.dtype == torch.bool:
                raise TaskError(self.task, f"label must be integer class ids (torch.long), got {target.dtype}")
            bad = (target < 0) | (target >= self.num_classes)
        else:
            if not target.is_floating_point():
                raise TaskError(self.task, f"label must be floating 0/1, got {target.dtype}")
            bad = (target != 0) & (target != 1)
        if bool(bad.any()):
            allowed = f"[0, {self.num_classes - 1}]" if self.labels == "classes" else "{0, 1}"
            raise TaskError(self.task, f"label values {target[bad].unique()[:8].tolist()} are outside {allowed}")


def cosine_normals_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 − Σ_valid n̂·n / N_valid`` with ``n̂ = pred/‖pred‖``; a pixel is valid unless its label is all zero.

    The normals loss of the MTAN repository (``model_fit``: ``1 - sum(x_pred * x_output * mask) / N_valid``, the
    prediction L2-normalised by the network's last line), used unchanged by CAGrad, Nash-MTL, FAMO and IMGrad.
    Returns a graph-connected 0 when no pixel is valid.
    """
    valid = (target != 0).any(dim=1, keepdim=True)
    dot = (F.normalize(pred, p=2, dim=1) * target).sum(dim=1, keepdim=True)
    count = valid.sum()
    if int(count) == 0:
        return pred.sum() * 0.0
    return 1.0 - torch.where(valid, dot, torch.zeros_like(dot)).sum() / count


def _binary_cross_entropy(pred: Tensor, target: Tensor) -> Tensor:
    """Mean BCE of ``σ(pred)``: FAMO's ``BCELoss`` on the sigmoid output, computed stably from the logit."""
    return F.binary_cross_entropy_with_logits(pred.squeeze(1), target)


def mtan_semseg(num_classes: int) -> TaskSpec:
    """Segmentation with ``num_classes`` classes (13 NYUv2, 7 or 19 Cityscapes): the study's ``semseg`` task."""
    return build_task("semseg", num_classes=num_classes)


def mtan_depth() -> TaskSpec:
    """MTAN-protocol depth: L1 over valid pixels (``model_fit``), primary metric ``abs_err``, also ``rel_err``."""
    check = InputCheck("depth", 1, "dense", target_channels=1)
    return TaskSpec("depth", TASK_LABELS["depth"], 1, TaskLoss(check, depth_l1_loss), partial(DepthErrorMeter, check),
                    "abs_err", False, 0.0, ("abs_err", "rel_err"))


def mtan_normals() -> TaskSpec:
    """MTAN-protocol normals: cosine loss, angle mean (primary), median and % within 11.25° / 22.5° / 30°."""
    check = InputCheck("normals", 3, "dense", target_channels=3)
    return TaskSpec(
        "normals",
        TASK_LABELS["normals"],
        3,
        TaskLoss(check, cosine_normals_loss),
        partial(NormalsMeter, check),
        "mean",
        False,
        0.0,
        NORMALS_METRICS,
    )


def digit_task(name: str, label: str, num_classes: int = 10) -> TaskSpec:
    """One digit of MultiMNIST: softmax cross-entropy (MGDA's log-softmax + NLL), accuracy (primary)."""
    check = VectorCheck(name, num_classes, "classes", num_classes=num_classes)
    return TaskSpec(name, label, num_classes, TaskLoss(check, F.cross_entropy), partial(AccuracyMeter, check),
                    "accuracy", True, NO_IGNORE, ("accuracy",))


def attribute_task(name: str) -> TaskSpec:
    """One binary CelebA attribute: one logit, binary cross-entropy, F1 (primary) and accuracy."""
    check = VectorCheck(name, 1, "binary")
    return TaskSpec(name, name, 1, TaskLoss(check, _binary_cross_entropy), partial(BinaryF1Meter, check),
                    "f1", True, NO_IGNORE, ("f1", "accuracy"))
