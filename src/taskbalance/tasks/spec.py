"""The declarative task object (:class:`TaskSpec`), the meter interface every metric implements, and task errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


class TaskError(ValueError):
    """A user mistake about a task: unknown name, bad option, or a prediction/label that breaks the task's format.

    The message always starts with the task name, so it can be traced back in a multi-task batch.
    """

    def __init__(self, task: str, problem: str) -> None:
        super().__init__(f"task {task!r}: {problem}")
        self.task = task
        self.problem = problem


class EmptyMeterError(TaskError):
    """``compute()`` was called on a meter that has not accumulated a single labelled pixel."""


class Meter(Protocol):
    """Accumulates a task's metrics over a whole split (all images), then reports them in one dict."""

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch: ``pred`` is the raw B×C×H×W model output, ``target`` the batched label."""

    def compute(self) -> dict[str, float]:
        """The metrics of everything seen since construction or the last :meth:`reset`."""

    def reset(self) -> None:
        """Forget everything accumulated."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything the rest of the library needs to know about one dense-prediction task.

    Attributes:
        name: canonical task name (see :data:`taskbalance.conventions.TASK_NAMES`).
        label: short label used in tables and figures (``Seg.``, ``Dep.``, ...).
        out_channels: channels of the model's raw output for this task.
        loss: ``loss(pred, target) -> scalar tensor``; validates its inputs (:class:`TaskError` on a mismatch).
        meter: factory of a fresh split-level :class:`Meter`.
        primary_metric: the metric that enters Δm and the result tables.
        higher_is_better: direction of the primary metric (``l_i = 0`` in the paper's Eq. (5) when True).
        ignore_value: label value marking unlabeled pixels (for normals: the all-zero vector).
        metrics: names of every metric the meter reports, primary first.
    """

    name: str
    label: str
    out_channels: int
    loss: Callable[[Tensor, Tensor], Tensor]
    meter: Callable[[], Meter]
    primary_metric: str
    higher_is_better: bool
    ignore_value: float
    metrics: tuple[str, ...]
