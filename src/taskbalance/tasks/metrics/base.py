"""Common plumbing of the split-level meters: input validation, no-grad detached updates, empty-split errors."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from taskbalance.tasks.spec import EmptyMeterError
from taskbalance.tasks.validation import InputCheck


class BaseMeter(ABC):
    """A :class:`~taskbalance.tasks.spec.Meter` that validates every batch with the task's :class:`InputCheck`.

    Subclasses implement :meth:`_update` (detached tensors, no autograd), :meth:`_compute` and :meth:`reset`;
    :meth:`_compute` calls :meth:`_require` to refuse an empty split with a clear error.
    """

    def __init__(self, check: InputCheck) -> None:
        self.check = check
        self.reset()

    @property
    def task(self) -> str:
        """Name of the task this meter measures."""
        return self.check.task

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Validate and accumulate one batch (``pred``: raw B×C×H×W output; ``target``: batched label)."""
        self.check(pred, target)
        with torch.no_grad():
            self._update(pred.detach(), target.detach())

    def compute(self) -> dict[str, float]:
        """The split-level metrics accumulated so far."""
        return self._compute()

    def _require(self, count: float, what: str = "labelled pixel") -> None:
        if count <= 0:
            raise EmptyMeterError(self.task, f"no {what} has been accumulated, so the metrics are undefined")

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    @abstractmethod
    def _update(self, pred: Tensor, target: Tensor) -> None: ...

    @abstractmethod
    def _compute(self) -> dict[str, float]: ...
