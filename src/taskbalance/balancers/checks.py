"""The checks of a step's inputs and of a method's output, each failing with one clear error.

* the gradient source (:func:`check_source`), the losses (:func:`loss_values`: count and finiteness;
  :func:`ordered_losses`: scalar tensors that require grad, in task order), the features and the source's tensors
  (:func:`feature_list`, :func:`source_tensors`);
* a method's :class:`~taskbalance.balancers.types.Aggregation` (:func:`checked_aggregation`: shape and finiteness).

Imports only :mod:`taskbalance.balancers.types`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from taskbalance.balancers.types import (
    GRADIENT_SOURCES,
    Aggregation,
    BalancerError,
    GradientReducer,
    GradientSource,
    NonFiniteLossError,
    StepMethod,
)


def check_source(method: StepMethod, source: str) -> GradientSource:
    """``source`` if it is a gradient source ``method`` supports, else a :class:`BalancerError`."""
    if source not in GRADIENT_SOURCES:
        raise BalancerError(f"{method.name}: source must be one of {GRADIENT_SOURCES}, got {source!r}")
    if source not in method.supported_sources:
        raise BalancerError(f"{method.name} supports the gradient sources {method.supported_sources}, not {source!r}")
    return source


def loss_values(
    method: StepMethod, losses: Mapping[str, Tensor] | Tensor, reducer: GradientReducer | None = None
) -> Tensor:
    """The K loss values (float64 CPU, task order; summed by ``reducer``), checked: count and finiteness."""
    if isinstance(losses, Mapping):
        check_task_keys(method, losses)
        values = torch.stack([torch.as_tensor(losses[t]).detach().reshape(()) for t in method.tasks])
    else:
        values = torch.as_tensor(losses).detach().reshape(-1)
    values = values.to(torch.float64).cpu()
    if values.numel() != len(method.tasks):
        raise BalancerError(f"{method.name}: expected {len(method.tasks)} losses, got {values.numel()}")
    if reducer is not None:
        values = reducer.sum_losses(values).to(torch.float64).cpu()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise NonFiniteLossError(method.tasks[bad], float(values[bad]), int(method.step_count))
    return values


def task_key_problems(keys: Sequence[str], tasks: Sequence[str]) -> str:
    """``"missing [..], unknown [..]"``: the tasks ``keys`` lacks and the keys that are no task ('' when none)."""
    missing = [t for t in tasks if t not in keys]
    unknown = [k for k in keys if k not in tasks]
    return ", ".join(f"{what} {names}" for what, names in (("missing", missing), ("unknown", unknown)) if names)


def check_task_keys(method: StepMethod, losses: Mapping[str, object]) -> None:
    """A :class:`BalancerError` naming the missing and the unknown tasks unless ``losses`` has exactly the tasks."""
    problems = task_key_problems(list(losses), method.tasks)
    if problems:
        raise BalancerError(f"{method.name}: expected losses of the tasks {list(method.tasks)}: {problems}")


def ordered_losses(method: StepMethod, losses: Mapping[str, Tensor]) -> list[Tensor]:
    """The task losses in task order, each checked to be a scalar tensor that requires grad."""
    if not isinstance(losses, Mapping):
        raise BalancerError(f"losses must be a dict task -> scalar tensor, got {type(losses).__name__}")
    check_task_keys(method, losses)
    ordered = []
    for task in method.tasks:
        loss = losses[task]
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise BalancerError(f"loss of task {task!r} must be a scalar tensor")
        if not loss.requires_grad:
            raise BalancerError(f"loss of task {task!r} does not require grad (computed under no_grad or detached?)")
        ordered.append(loss.reshape(()))
    return ordered


def feature_list(features: Tensor | Sequence[Tensor] | None) -> list[Tensor]:
    """The shared representation as a list of tensors that require grad (one tensor or several)."""
    if features is None:
        raise BalancerError("source 'features' needs the shared representation: pass features=... to backward()")
    tensors = [features] if isinstance(features, Tensor) else list(features)
    if not tensors or not all(isinstance(t, Tensor) and t.requires_grad for t in tensors):
        raise BalancerError("features must be tensors produced by the shared encoder (requiring grad)")
    return tensors


def source_tensors(
    method: StepMethod, source: GradientSource, features: Tensor | Sequence[Tensor] | None
) -> list[Tensor]:
    """The tensors the per-task gradients are taken on: the features, the last layer's or every shared parameter."""
    if source == "features":
        return feature_list(features)
    params = method.last_layer_params if source == "last_layer" else method.shared_params
    if not params:
        what = "last_layer (or a shared module to infer it from)" if source == "last_layer" else "shared"
        raise BalancerError(f"{method.name}: source {source!r} needs the balancer to be built with {what}=...")
    return params


def checked_aggregation(method: StepMethod, aggregation: Aggregation) -> Aggregation:
    """``aggregation`` with K finite weights (float64 CPU) and a finite flat direction, else an error naming the
    method and the step."""
    k, step = len(method.tasks), int(method.step_count)
    weights = aggregation.weights
    if weights.shape != (k,):
        raise RuntimeError(f"{method.name} returned weights of shape {tuple(weights.shape)}")
    if not bool(torch.isfinite(weights).all()):
        raise FloatingPointError(f"{method.name} produced non-finite weights {weights.tolist()} at step {step}")
    direction = aggregation.direction
    if direction is not None and (direction.dim() != 1 or not bool(torch.isfinite(direction).all())):
        raise FloatingPointError(f"{method.name} produced a non-finite or non-flat direction at step {step}")
    return Aggregation(
        weights=weights.detach().to(torch.float64).cpu(),
        direction=direction,
        head_weights=None if aggregation.head_weights is None else aggregation.head_weights.detach().double().cpu(),
    )
