"""Training losses of the dense-prediction tasks, as in the reference code (MTLP / InvPT / ATRC lineage).

Every loss takes the raw B×C×H×W model output and the batched label (conventions in
:mod:`taskbalance.conventions`), averages over the *labelled* pixels of the whole batch, and returns a scalar.
When a batch has no labelled pixel at all the loss is an exact zero that is still connected to the graph
(so ``backward()`` works and writes zero gradients) instead of the NaN that ``0/0`` would give.

Data-parallel training: inside :func:`shared_normaliser` every pixel count (the masked means' denominators and the
adaptive BCE weight's counts) is replaced by its mean over the processes, so each process's loss is
``Σ_local / mean_ranks(N)`` and the mean of the processes' losses is the masked mean over the *global* batch,
exactly, whatever the ignore counts of each shard (see ``docs/distributed.md``).
:class:`TaskLoss` wraps one of them with the task's :class:`~taskbalance.tasks.validation.InputCheck`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from taskbalance.conventions import IGNORE_INDEX, INVALID_DEPTH
from taskbalance.tasks.validation import InputCheck

NormalsReduction = Literal["pixel", "element"]
CountReducer = Callable[[Tensor], Tensor]

_COUNT_REDUCER: ContextVar[CountReducer | None] = ContextVar("taskbalance_count_reducer", default=None)


@contextmanager
def shared_normaliser(mean_over_processes: CountReducer) -> Iterator[None]:
    """Within the block, the losses normalise by ``mean_over_processes(count)`` instead of the local count.

    ``mean_over_processes`` maps a scalar count to its mean over the data-parallel processes (a collective: every
    process must compute the same losses in the same order).
    """
    token = _COUNT_REDUCER.set(mean_over_processes)
    try:
        yield
    finally:
        _COUNT_REDUCER.reset(token)


def _count(count: Tensor) -> Tensor:
    """``count`` as a float, or its mean over the processes inside :func:`shared_normaliser`."""
    reduce = _COUNT_REDUCER.get()
    count = count.to(torch.float64)
    return count if reduce is None else reduce(count)


def _masked_mean(values: Tensor, valid: Tensor, denominator: Tensor | None = None) -> Tensor:
    """Sum of ``values`` over ``valid`` divided by ``denominator`` (default: number of valid entries)."""
    total = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    count = _count(valid.sum() if denominator is None else denominator)
    return total / torch.where(count > 0, count, 1.0).to(total.dtype)


def cross_entropy_loss(pred: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Softmax cross-entropy averaged over labelled pixels: ``Σ_valid −log softmax(pred)[y] / N_valid``.

    Reference: MTLP ``LogSoftmax`` + ``NLLLoss(ignore_index=255)``, ATRC/InvPT CE over valid pixels (identical).
    """
    valid = target != ignore_index
    per_pixel = F.cross_entropy(pred, torch.where(valid, target, 0).long(), reduction="none")
    return _masked_mean(per_pixel, valid)


def depth_l1_loss(pred: Tensor, target: Tensor, invalid: float = INVALID_DEPTH) -> Tensor:
    """L1 on metric depth over valid pixels: ``Σ_{d≠invalid} |d̂ − d| / N_valid`` (no activation on ``pred``).

    Reference: MTLP / InvPT / ATRC L1 with the invalid pixels masked out.
    """
    valid = target != invalid
    return _masked_mean((pred - target).abs(), valid)


def normals_l1_loss(pred: Tensor, target: Tensor, reduction: NormalsReduction = "pixel") -> Tensor:
    """L1 between the L2-normalised prediction and the unit normal label, over valid pixels.

    ``Σ_valid Σ_c |n̂_c/‖n̂‖ − n_c| / D`` where a pixel is valid unless its label is the all-zero vector.
    ``reduction="pixel"`` (default) divides by the number of valid *pixels*, as InvPT/ATRC ``L1Loss(normalize=True)``
    do; InvPT is the paper's reference implementation ([14]) and its loss weights assume this scale.
    ``reduction="element"`` divides by valid *elements* (3 per pixel), as MTLP's ``NormalsLoss``: a 3× smaller
    loss at the same task weight.
    """
    valid = (target != 0).any(dim=1, keepdim=True)
    per_pixel = (F.normalize(pred, p=2, dim=1) - target).abs().sum(dim=1, keepdim=True)
    pixels = valid.sum()
    return _masked_mean(per_pixel, valid, pixels * 3 if reduction == "element" else pixels)


def balanced_bce_loss(
    pred: Tensor, target: Tensor, pos_weight: float | None = None, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Class-balanced binary cross-entropy on logits, averaged over labelled pixels.

    ``Σ_valid −[w·y·log σ(x) + (1 − w)·(1 − y)·log(1 − σ(x))] / N_valid``.
    ``pos_weight`` fixes ``w`` (edges: 0.95, MTLP ``BalancedCrossEntropyLoss(pos_weight=0.95)``; ATRC/InvPT's
    ``BCEWithLogits(pos_weight=w/(1−w))·(1−w)`` is the same weighting). ``pos_weight=None`` is the adaptive HED
    weighting used for saliency: ``w = N_negative / N_valid`` over the batch (MTLP ``pos_weight=None``).
    MTLP divides by all pixels; we divide by labelled pixels, which is identical whenever nothing is padded.
    """
    valid = target != ignore_index
    labels = torch.where(valid, target, torch.zeros((), dtype=target.dtype, device=target.device))
    if pos_weight is None:
        negatives = _count(((labels == 0) & valid).sum())
        labelled = _count(valid.sum())
        w = (negatives / torch.where(labelled > 0, labelled, 1.0)).to(pred.dtype)
    else:
        w = torch.as_tensor(pos_weight, dtype=pred.dtype, device=pred.device)
    per_pixel = -(w * labels * F.logsigmoid(pred) + (1 - w) * (1 - labels) * F.logsigmoid(-pred))
    return _masked_mean(per_pixel, valid)


@dataclass(frozen=True)
class TaskLoss:
    """A task's loss: validates ``(pred, target)`` with ``check`` and then applies ``fn``. Picklable."""

    check: InputCheck
    fn: Callable[[Tensor, Tensor], Tensor]

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        """The scalar loss of one batch (raises :class:`~taskbalance.tasks.spec.TaskError` on bad input)."""
        self.check(pred, target)
        return self.fn(pred, target)
