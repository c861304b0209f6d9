"""Input checks shared by a task's loss and meter: shapes, dtypes and label values, with errors naming the task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.tasks.spec import TaskError

LabelKind = Literal["classes", "binary", "dense"]


def _shape(t: Tensor) -> str:
    return "×".join(str(s) for s in t.shape) or "scalar"


def _preview(values: Tensor, limit: int = 8) -> str:
    shown = values[:limit].tolist()
    more = "" if values.numel() <= limit else f" (and {values.numel() - limit} more)"
    return f"{shown}{more}"


@dataclass(frozen=True)
class InputCheck:
    """The format of one task's prediction and label; calling it raises :class:`TaskError` on any mismatch.

    Attributes:
        task: task name used in error messages.
        channels: channels of the raw prediction (B×channels×H×W, floating point).
        labels: ``classes``: integer B×H×W class map with values in ``[0, num_classes)`` or 255;
            ``binary``: floating B×1×H×W map with values in {0, 1, 255};
            ``dense``: floating B×``target_channels``×H×W regression target (any value).
        num_classes: class count (``classes`` only).
        target_channels: channels of a ``dense`` target.
    """

    task: str
    channels: int
    labels: LabelKind
    num_classes: int = 0
    target_channels: int = 1

    def __call__(self, pred: Tensor, target: Tensor) -> None:
        """Raise :class:`TaskError` unless ``pred`` and ``target`` form a valid batch of this task."""
        if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
            raise TaskError(
                self.task,
                f"prediction and label must be tensors, got {type(pred).__name__} and {type(target).__name__}",
            )
        if pred.dim() != 4 or pred.shape[1] != self.channels:
            raise TaskError(self.task, f"prediction must be B×{self.channels}×H×W, got shape {_shape(pred)}")
        if not pred.is_floating_point():
            raise TaskError(self.task, f"prediction must be floating point (raw model output), got dtype {pred.dtype}")
        batch, _, height, width = pred.shape
        if self.labels == "classes":
            expected: tuple[int, ...] = (batch, height, width)
            layout = "B×H×W"
        else:
            expected = (batch, self.target_channels if self.labels == "dense" else 1, height, width)
            layout = f"B×{expected[1]}×H×W"
        if tuple(target.shape) != expected:
            raise TaskError(
                self.task,
                f"label must be {layout} matching the prediction {_shape(pred)}, got shape {_shape(target)}",
            )
        if self.labels == "classes":
            self._check_classes(target)
        elif not target.is_floating_point():
            raise TaskError(self.task, f"label must be floating point, got dtype {target.dtype}")
        elif self.labels == "binary":
            self._check_binary(target)

    def _check_classes(self, target: Tensor) -> None:
        if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
            raise TaskError(self.task, f"label must be an integer class map (torch.long), got dtype {target.dtype}")
        bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= self.num_classes))
        if bool(bad.any()):
            raise TaskError(
                self.task,
                f"label values {_preview(target[bad].unique())} are outside the class range "
                f"[0, {self.num_classes - 1}] (only {IGNORE_INDEX} marks ignored pixels)",
            )

    def _check_binary(self, target: Tensor) -> None:
        bad = (target != 0) & (target != 1) & (target != IGNORE_INDEX)
        if bool(bad.any()):
            raise TaskError(
                self.task, f"label values {_preview(target[bad].unique())} are not 0, 1 or {IGNORE_INDEX} (ignored)"
            )
