"""Evaluation over a whole split, the per-task loss of a training forward, and the model-selection score."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from taskbalance.tasks import TaskSpec


def autocast_context(device: torch.device, enabled: bool) -> AbstractContextManager[Any]:
    """bfloat16 autocast on GPU when enabled (no loss scaling needed); a no-op on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def task_losses(specs: Mapping[str, TaskSpec], output: Any, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Each task's loss on its final prediction plus its deep-supervision (auxiliary) predictions, at full weight."""
    losses = {}
    for task, spec in specs.items():
        target = batch[task]
        loss = spec.loss(output.predictions[task].float(), target)
        for auxiliary in output.auxiliary.get(task, []):
            loss = loss + spec.loss(auxiliary.float(), target)
        losses[task] = loss
    return losses


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Mapping[str, Any]],
    specs: Mapping[str, TaskSpec],
    device: torch.device,
    amp: bool = False,
    max_batches: int | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every task over the batches (the model is put in eval mode and restored afterwards)."""
    was_training = model.training
    model.eval()
    meters = {task: spec.meter() for task, spec in specs.items()}
    try:
        for index, batch in enumerate(batches):
            if max_batches is not None and index >= max_batches:
                break
            with autocast_context(device, amp):
                predictions = model(batch["image"].to(device))
            for task, meter in meters.items():
                meter.update(predictions[task].float(), batch[task].to(device))
    finally:
        model.train(was_training)
    return {task: meter.compute() for task, meter in meters.items()}


def primary(metrics: Mapping[str, Mapping[str, float]], specs: Mapping[str, TaskSpec]) -> dict[str, float]:
    """The primary metric of each task."""
    return {task: metrics[task][spec.primary_metric] for task, spec in specs.items()}


def selection_score(
    metrics: Mapping[str, Mapping[str, float]], reference: Mapping[str, float], specs: Mapping[str, TaskSpec]
) -> float:
    """Δm (percent) of the primary metrics against ``reference`` (single-task metrics, or the run's first evaluation);
    the evaluation with the highest score is selected. ``-inf`` when Δm is undefined (a zero reference value)."""
    from taskbalance.results.delta import ResultsError
    from taskbalance.tasks import delta_m

    try:
        return float(delta_m(primary(metrics, specs), reference, {t: s.higher_is_better for t, s in specs.items()}))
    except ResultsError:
        return float("-inf")
