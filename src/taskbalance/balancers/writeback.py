"""Writing a step's update into ``.grad``: the shared parameters (combined from the per-task gradients, or by one
backward of the reweighted losses, or back through the encoder from the features) and the heads.

Gradients accumulate into ``.grad`` like ``loss.backward()``. Imports :mod:`~taskbalance.balancers.types`,
:mod:`~taskbalance.balancers.gradients` and :mod:`~taskbalance.balancers.graph`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from taskbalance.balancers.gradients import StepGradients
from taskbalance.balancers.graph import head_parameters
from taskbalance.balancers.types import Aggregation, BalancerError, StepMethod


def head_coefficients(method: StepMethod, aggregation: Aggregation) -> Tensor:
    """Coefficients of the task losses for the task-specific parameters."""
    if aggregation.head_weights is not None:
        return aggregation.head_weights
    if method.head_gradients == "raw":
        return torch.ones(len(method.tasks), dtype=torch.float64)
    return aggregation.weights


def write_weighted_losses(
    method: StepMethod, loss_list: Sequence[Tensor], aggregation: Aggregation, heads: Tensor
) -> None:
    """Shared parameters from one reweighted backward of ``Σ_i w_i L_i`` (loss-only methods, ``last_layer``)."""
    weights = aggregation.weights
    if aggregation.direction is not None:
        raise BalancerError(f"{method.name} produces a direction, which needs source 'params' or 'features'")
    if torch.equal(heads, weights):
        _weighted_sum(loss_list, weights).backward()
        return
    shared = method.shared_params
    if not shared:
        raise BalancerError(f"{method.name}: raw head gradients need the balancer to be built with shared=...")
    torch.autograd.backward(_weighted_sum(loss_list, weights), inputs=shared, retain_graph=True)
    head_params = head_parameters(method, loss_list, stop_at=())
    if head_params:
        torch.autograd.backward(_weighted_sum(loss_list, heads), inputs=head_params)


def _split(flat: Tensor, tensors: Sequence[Tensor]) -> list[Tensor]:
    pieces, offset = [], 0
    for t in tensors:
        pieces.append(flat[offset : offset + t.numel()].view(t.shape))
        offset += t.numel()
    return pieces


def write_direction(method: StepMethod, gradients: StepGradients, aggregation: Aggregation, heads: Tensor) -> None:
    """Shared update combined from per-task gradients (into ``.grad``, or back through the encoder), heads summed."""
    update = gradients.update
    assert update is not None
    tensors, explicit = update.tensors, aggregation.direction
    if explicit is not None:
        if gradients.source == "last_layer":
            raise BalancerError(f"{method.name} produces a direction, which needs source 'params' or 'features'")
        size = sum(t.numel() for t in tensors)
        if explicit.numel() != size:
            raise RuntimeError(f"{method.name} returned a direction of size {explicit.numel()}, expected {size}")
        pieces, owned = _split(explicit, tensors), False
    else:
        pieces, owned = update.combined(aggregation.weights), True
    shared = method.shared_params
    if gradients.source == "last_layer" and gradients.task is not None:
        # the last layer's share of the update is Σ_i w_i g_i, already at hand: the encoder backward skips it
        last = {id(p) for p in method.last_layer_params}
        if last <= {id(p) for p in shared}:
            for param, piece in zip(gradients.task.tensors, gradients.task.combined(aggregation.weights)):
                _accumulate(param, piece, owned=True)
            shared = [p for p in shared if id(p) not in last]
    gradients.task = gradients.update = None  # the last use of J: free it before the heads and the encoder backward
    for index, param in enumerate(gradients.head_params):
        parts = [float(h) * grad for h, grads in zip(heads, gradients.head_grads) if (grad := grads[index]) is not None]
        if parts:
            _accumulate(param, torch.stack(parts).sum(0) if len(parts) > 1 else parts[0], owned=True)
    gradients.head_grads = []
    if not gradients.through_features:
        for param, piece in zip(method.shared_params, pieces):
            _accumulate(param, piece, owned)
        return
    # Back-propagating the scalar Σ ⟨z, dz⟩ (dz constant) gives the encoder exactly the gradient of ``dz``; unlike
    # ``backward(tensors, grad_tensors=...)`` it does not make torch import sympy (seconds) on first use.
    zero = torch.zeros((), device=tensors[0].device)
    surrogate = sum(((z * dz.to(z.dtype)).sum() for z, dz in zip(tensors, pieces)), zero)
    torch.autograd.backward(surrogate, inputs=shared or None)


def _accumulate(param: Tensor, grad: Tensor, owned: bool) -> None:
    """Add ``grad`` into ``param.grad``; an ``owned`` tensor (made by the engine, used nowhere else) is stolen."""
    grad = grad.to(param.dtype)
    if param.grad is None:
        param.grad = grad if owned and grad.is_contiguous() else grad.clone()
    else:
        param.grad.add_(grad)


def _weighted_sum(losses: Sequence[Tensor], coefficients: Tensor) -> Tensor:
    return sum((float(c) * loss for c, loss in zip(coefficients, losses)), torch.zeros((), device=losses[0].device))
