"""Turning a method's decision into ``.grad``: per-task gradients on a source, the Gramian, and the write-back.

Gradient sources:

* ``params``: ``g_i = ∇_θ L_i`` over every shared parameter (one ``autograd.grad`` per task). The shared
  update ``d`` is written into the shared ``.grad``; the task-specific parameters get ``∇ Σ_i h_i L_i``.
* ``last_layer``: ``g_i`` over the last shared layer only (GradNorm, AvgNorm). The weights are then applied as
  loss weights: one backward of ``Σ_i w_i L_i`` fills the shared parameters.
* ``features``: ``g_i = ∇_z L_i`` on the shared representation ``z`` (MGDA-UB, LibMTL's ``rep_grad``); the encoder
  is back-propagated once with the combined feature gradient ``dz``.

Methods that only weigh losses take one backward of ``Σ_i w_i L_i`` and no per-task gradients at all.
Gradients accumulate into ``.grad`` (like ``loss.backward()``), so gradient accumulation keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from torch import Tensor

from taskbalance.balancers.base import (
    GRADIENT_SOURCES,
    Aggregation,
    BalancerError,
    GradientSource,
    StepInputs,
    StepResult,
)

if TYPE_CHECKING:
    from taskbalance.balancers.base import Balancer


def task_jacobian(losses: Sequence[Tensor], inputs: Sequence[Tensor]) -> Tensor:
    """Rows ``∇ L_i`` flattened over ``inputs`` (K×d, float32 or the inputs' dtype); unused inputs give zeros."""
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, list(inputs), retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(x) if g is None else g).reshape(-1) for x, g in zip(inputs, grads)]))
    return torch.stack(rows)


def gramian_of(jacobian: Tensor) -> Tensor:
    """``G = J Jᵀ`` in float64 on the CPU (what the solvers take)."""
    j = jacobian.double()
    return (j @ j.T).cpu()


def accumulate_flat(params: Sequence[Tensor], flat: Tensor) -> None:
    """Add a flat vector, split by parameter shapes, into ``.grad``."""
    offset = 0
    for p in params:
        piece = flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()
        if p.grad is None:
            p.grad = piece.clone()
        else:
            p.grad.add_(piece)
    if offset != flat.numel():
        raise RuntimeError(f"direction has {flat.numel()} entries but the parameters have {offset}")


def reachable_leaves(roots: Sequence[Tensor], stop_at: Sequence[Tensor] = ()) -> list[Tensor]:
    """Leaf tensors requiring grad that the roots depend on, without walking through ``stop_at`` tensors."""
    stop = {t.grad_fn for t in stop_at if t.grad_fn is not None}
    seen: set[object] = set()
    leaves: dict[int, Tensor] = {}
    stack = [r.grad_fn for r in roots if r.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen or node in stop:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves[id(variable)] = variable
        stack.extend(next_node for next_node, _ in node.next_functions)
    return list(leaves.values())


def _feature_list(features: Tensor | Sequence[Tensor] | None) -> list[Tensor]:
    if features is None:
        raise BalancerError("source 'features' needs the shared representation: pass features=... to backward()")
    tensors = [features] if isinstance(features, Tensor) else list(features)
    if not tensors or not all(isinstance(t, Tensor) and t.requires_grad for t in tensors):
        raise BalancerError("features must be tensors produced by the shared encoder (requiring grad)")
    return tensors


def _source_tensors(balancer: Balancer, source: GradientSource, features: Tensor | Sequence[Tensor] | None) -> list[Tensor]:
    if source == "features":
        return _feature_list(features)
    params = balancer.last_layer_params if source == "last_layer" else balancer.shared_params
    if not params:
        what = "last_layer (or a shared module to infer it from)" if source == "last_layer" else "shared"
        raise BalancerError(f"{balancer.name}: source {source!r} needs the balancer to be built with {what}=...")
    return params


def _loss_vector(balancer: Balancer, losses: Mapping[str, Tensor]) -> list[Tensor]:
    if not isinstance(losses, Mapping):
        raise BalancerError(f"losses must be a dict task -> scalar tensor, got {type(losses).__name__}")
    missing = [t for t in balancer.tasks if t not in losses]
    extra = [t for t in losses if t not in balancer.tasks]
    if missing or extra:
        raise BalancerError(f"{balancer.name}: losses have tasks {sorted(losses)}, expected {list(balancer.tasks)}")
    ordered = []
    for task in balancer.tasks:
        loss = losses[task]
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise BalancerError(f"loss of task {task!r} must be a scalar tensor")
        if not loss.requires_grad:
            raise BalancerError(f"loss of task {task!r} does not require grad (computed under no_grad or detached?)")
        ordered.append(loss.reshape(()))
    return ordered


def _weighted_sum(losses: Sequence[Tensor], coefficients: Tensor) -> Tensor:
    return sum((float(c) * loss for c, loss in zip(coefficients, losses)), torch.zeros((), device=losses[0].device))


def run_backward(
    balancer: Balancer,
    losses: Mapping[str, Tensor],
    features: Tensor | Sequence[Tensor] | None,
    source: GradientSource,
    diagnose: GradientSource | None,
) -> StepResult:
    """Compute what ``balancer`` needs, ask it to aggregate, and write the gradients (see module docstring)."""
    loss_list = _loss_vector(balancer, losses)
    loss_values = balancer._check_losses(torch.stack([l.detach() for l in loss_list]).double().cpu())

    needs_gradients = balancer.requires != "losses"
    if needs_gradients:
        source = balancer.check_source(source)
    elif diagnose is not None and diagnose not in GRADIENT_SOURCES:
        raise BalancerError(f"diagnose must be one of {GRADIENT_SOURCES}, got {diagnose!r}")
    jacobian_source: GradientSource | None = source if needs_gradients else diagnose
    jacobian = gramian = None
    source_tensors: list[Tensor] = []
    if jacobian_source is not None:
        source_tensors = _source_tensors(balancer, jacobian_source, features)
        jacobian = task_jacobian(loss_list, source_tensors)
        gramian = gramian_of(jacobian)
    wants_jacobian = balancer.requires == "jacobian"
    inputs = StepInputs(
        losses=loss_values,
        gramian=gramian if needs_gradients else None,
        jacobian=jacobian if wants_jacobian else None,
        step=int(balancer.step_count),
        features=tuple(t.detach() for t in source_tensors) if wants_jacobian and source == "features" else None,
    )
    aggregation = balancer._checked(balancer.aggregate(inputs))
    _write_gradients(balancer, loss_list, aggregation, source if needs_gradients else None, features, jacobian)
    balancer.step_count += 1
    return _result(balancer, loss_values, aggregation, jacobian_source, gramian, jacobian)


def _write_gradients(
    balancer: Balancer,
    loss_list: Sequence[Tensor],
    aggregation: Aggregation,
    source: GradientSource | None,
    features: Tensor | Sequence[Tensor] | None,
    jacobian: Tensor | None,
) -> None:
    weights = aggregation.weights
    heads = balancer.head_coefficients(aggregation)
    explicit = aggregation.direction is not None
    if source in (None, "last_layer"):
        if explicit:
            raise BalancerError(f"{balancer.name} produces a direction, which needs source 'params' or 'features'")
        if torch.equal(heads, weights):
            _weighted_sum(loss_list, weights).backward()
            return
        shared = balancer.shared_params
        if not shared:
            raise BalancerError(f"{balancer.name}: raw head gradients need the balancer to be built with shared=...")
        torch.autograd.backward(_weighted_sum(loss_list, weights), inputs=shared, retain_graph=True)
        _backward_heads(balancer, loss_list, heads, stop_at=())
        return

    assert jacobian is not None
    direction = aggregation.direction if explicit else weights.to(jacobian) @ jacobian
    if direction.numel() != jacobian.shape[1]:
        raise RuntimeError(f"{balancer.name} returned a direction of size {direction.numel()}, expected {jacobian.shape[1]}")
    if source == "params":
        accumulate_flat(balancer.shared_params, direction.to(jacobian))
        _backward_heads(balancer, loss_list, heads, stop_at=())
        return
    tensors = _feature_list(features)
    _backward_heads(balancer, loss_list, heads, stop_at=tensors)
    # Back-propagating the scalar Σ ⟨z, dz⟩ (dz constant) gives the encoder exactly the gradient of ``dz``; unlike
    # ``backward(tensors, grad_tensors=...)`` it does not make torch import sympy (seconds) on first use.
    surrogate, offset = torch.zeros((), device=direction.device, dtype=tensors[0].dtype), 0
    for z in tensors:
        surrogate = surrogate + (z * direction[offset : offset + z.numel()].view_as(z).to(z.dtype)).sum()
        offset += z.numel()
    torch.autograd.backward(surrogate, inputs=balancer.shared_params or None)


def _backward_heads(balancer: Balancer, loss_list: Sequence[Tensor], heads: Tensor, stop_at: Sequence[Tensor]) -> None:
    shared_ids = {id(p) for p in balancer.shared_params}
    leaves = reachable_leaves(loss_list, stop_at=stop_at)
    if stop_at:
        leaked = [p for p in leaves if id(p) in shared_ids]
        if leaked:
            raise BalancerError(
                f"{balancer.name}: the losses reach {len(leaked)} shared parameter(s) by a path that bypasses the "
                "features passed to backward(); pass every shared tensor the heads read (a list is fine)"
            )
    head_params = [p for p in leaves if id(p) not in shared_ids]
    if head_params:
        torch.autograd.backward(_weighted_sum(loss_list, heads), inputs=head_params, retain_graph=bool(stop_at))


def _result(
    balancer: Balancer,
    losses: Tensor,
    aggregation: Aggregation,
    source: GradientSource | None,
    gramian: Tensor | None,
    jacobian: Tensor | None,
) -> StepResult:
    direction_norm = dots = None
    if gramian is not None and jacobian is not None:
        if aggregation.direction is not None and aggregation.direction.numel() == jacobian.shape[1]:
            direction = aggregation.direction.to(jacobian)
            dots = (jacobian @ direction).double().cpu()
            direction_norm = float(direction.double().norm())
        else:
            dots = gramian @ aggregation.weights
            direction_norm = float((aggregation.weights @ dots).clamp_min(0).sqrt())
    return StepResult(
        tasks=balancer.tasks,
        losses={t: float(v) for t, v in zip(balancer.tasks, losses)},
        weights={t: float(w) for t, w in zip(balancer.tasks, aggregation.weights)},
        source=source,
        gramian=gramian,
        direction_norm=direction_norm,
        task_direction_dot=dots,
    )
