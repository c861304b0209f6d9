"""The per-task gradients of one step: how they are taken (:func:`task_gradients`), kept (:class:`TaskGradients`,
no copy of what autograd returns) and handed through the step (:class:`StepGradients`).

Imports only :mod:`~taskbalance.balancers.types` and :mod:`~taskbalance.balancers.gramian`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from taskbalance.balancers.gramian import GRAMIAN_BLOCK, gramian_of_blocks
from taskbalance.balancers.types import GradientSource


class TaskGradients:
    """The K per-task gradients on a list of source tensors.

    Kept as autograd returns them (``rows[i][p]``: task i, tensor p; no copy) or, when ``batched``, as one K×…
    block per tensor. :meth:`flat` materialises the K×d matrix J (for methods that need J, and for a reducer),
    after which the rows are views of it.
    """

    def __init__(self, tensors: Sequence[Tensor], rows: list[list[Tensor]] | None, blocks: list[Tensor] | None) -> None:
        self.tensors = list(tensors)
        self.rows = rows
        self.blocks = blocks
        self.jacobian: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        """K, the number of tasks."""
        if self.rows is not None:
            return len(self.rows)
        assert self.blocks is not None
        return self.blocks[0].shape[0]

    def _blocks(self) -> Iterable[Tensor]:
        """K×n blocks of J: the stored blocks, or the rows stacked chunk by chunk into one small reused buffer
        (:data:`GRAMIAN_BLOCK` columns: cache-resident, and no large fresh allocation to fault in)."""
        k = self.num_tasks
        if self.blocks is not None:
            yield from (block.reshape(k, -1) for block in self.blocks)
            return
        assert self.rows is not None
        buffer: Tensor | None = None
        for index in range(len(self.tensors)):
            flats = [row[index].reshape(-1) for row in self.rows]
            if buffer is None or buffer.dtype != flats[0].dtype:
                buffer = torch.empty(k * GRAMIAN_BLOCK, dtype=flats[0].dtype, device=flats[0].device)
            for start in range(0, flats[0].numel(), GRAMIAN_BLOCK):
                width = min(GRAMIAN_BLOCK, flats[0].numel() - start)
                out = buffer[: k * width].view(k, width)
                yield torch.stack([flat[start : start + width] for flat in flats], out=out)

    def gramian(self) -> Tensor:
        """``G = J Jᵀ`` (float64 CPU), one block per source tensor (or per chunk of it)."""
        return gramian_of_blocks(self._blocks())

    def flat(self) -> Tensor:
        """J (K×d): materialised once; the rows become views of it."""
        if self.jacobian is None:
            k, sizes = self.num_tasks, [t.numel() for t in self.tensors]
            dtype = self.tensors[0].dtype
            for t in self.tensors[1:]:
                dtype = torch.promote_types(dtype, t.dtype)
            jacobian = torch.empty(k, sum(sizes), dtype=dtype, device=self.tensors[0].device)
            offset = 0
            for index, size in enumerate(sizes):
                target = jacobian[:, offset : offset + size]
                if self.blocks is not None:
                    target.copy_(self.blocks[index].reshape(k, -1))
                else:
                    assert self.rows is not None
                    for i in range(k):
                        target[i].copy_(self.rows[i][index].reshape(-1))
                offset += size
            self.set_flat(jacobian)
        assert self.jacobian is not None
        return self.jacobian

    def set_flat(self, jacobian: Tensor) -> None:
        """Replace the gradients by ``jacobian`` (K×d, e.g. summed over processes)."""
        self.jacobian = jacobian
        offset, blocks = 0, []
        for t in self.tensors:
            blocks.append(jacobian[:, offset : offset + t.numel()])
            offset += t.numel()
        self.blocks, self.rows = blocks, None

    def combined(self, weights: Tensor) -> list[Tensor]:
        """``Σ_i w_i g_i`` per source tensor (shapes of the tensors). Consumes the gradients (reused in place)."""
        coefficients = [float(w) for w in weights]
        if self.blocks is not None:
            pieces = []
            for t, block in zip(self.tensors, self.blocks):
                block = block.reshape(len(coefficients), -1)
                pieces.append((weights.to(block) @ block).view(t.shape))
            return pieces
        assert self.rows is not None
        pieces = []
        for index in range(len(self.tensors)):
            first = self.rows[0][index]  # autograd's own buffer, reused unless it is a view such as an expand
            total = (first if first.is_contiguous() else first.clone()).mul_(coefficients[0])
            for i in range(1, len(coefficients)):
                total.add_(self.rows[i][index], alpha=coefficients[i])
            pieces.append(total)
        self.rows = None
        return pieces


def task_gradients(
    losses: Sequence[Tensor], tensors: Sequence[Tensor], extra: Sequence[Tensor], retain_graph: bool, batched: bool
) -> tuple[TaskGradients, list[list[Tensor | None]]]:
    """The per-task gradients on ``tensors`` (zeros where unused) and, per task, the gradients of the ``extra``
    tensors taken in the same calls (None where unused). The graph is freed by the last call unless ``retain_graph``."""
    k = len(losses)
    inputs = [*tensors, *extra]
    if batched:
        stacked = torch.stack(list(losses))
        cotangents = torch.eye(k, dtype=stacked.dtype, device=stacked.device)
        grads = torch.autograd.grad(
            stacked, inputs, cotangents, retain_graph=retain_graph, allow_unused=True, is_grads_batched=True
        )
        blocks = [torch.zeros((k, *t.shape), dtype=t.dtype, device=t.device) if g is None else g
                  for t, g in zip(tensors, grads)]
        batched_extra: list[list[Tensor | None]] = [
            [None if g is None else g[i] for g in grads[len(tensors) :]] for i in range(k)
        ]
        return TaskGradients(tensors, None, blocks), batched_extra
    rows: list[list[Tensor]] = []
    extra_grads: list[list[Tensor | None]] = []
    for i, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, inputs, retain_graph=retain_graph or i < k - 1, allow_unused=True)
        rows.append([torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)])
        extra_grads.append(list(grads[len(tensors) :]))
    return TaskGradients(tensors, rows, None), extra_grads


@dataclass
class StepGradients:
    """Per-task gradients on one source (``task``, dropped once not needed), their Gramian, and what the shared
    update is combined from: ``update`` (the source's own gradients, or the features' for ``last_layer``), applied
    into ``.grad`` or, when ``through_features``, by one backward through the encoder; the heads' pieces."""

    source: GradientSource
    task: TaskGradients | None
    gramian: Tensor
    update: TaskGradients | None = None
    through_features: bool = False
    head_params: list[Tensor] = field(default_factory=list)
    head_grads: list[list[Tensor | None]] = field(default_factory=list)
