"""The engine: the step sequence, the only code that builds a method's inputs, counts steps and calls autograd.

:func:`backward` (behind ``Balancer.backward``) and :func:`combine` (behind ``Balancer.combine``) run the same
sequence, :func:`_run`: inputs → ``method.aggregate`` → checked :class:`Aggregation` → write-back → step count.
Each part of it has its own module: :mod:`~taskbalance.balancers.checks` (the losses, the source, the method's
output), :mod:`~taskbalance.balancers.gradients` (taking and keeping the per-task gradients),
:mod:`~taskbalance.balancers.gramian` (the Gramian, computed there only), :mod:`~taskbalance.balancers.capture`
(the last layer's forward hook), :mod:`~taskbalance.balancers.graph` (the head parameters) and
:mod:`~taskbalance.balancers.writeback` (``.grad``). The engine reads a balancer only through the
:class:`~taskbalance.balancers.types.StepMethod` protocol and imports nothing above those modules.

Gradient sources:

* ``params``: ``g_i = ∇_θ L_i`` over every shared parameter (one ``autograd.grad`` per task). The shared
  update ``d`` is written into the shared ``.grad``; the task-specific parameters get ``∇ Σ_i h_i L_i``.
* ``last_layer``: ``g_i`` over the last shared layer only (GradNorm, AvgNorm). The weights are then applied as
  loss weights: one backward of ``Σ_i w_i L_i`` fills the shared parameters.
* ``features``: ``g_i = ∇_z L_i`` on the shared representation ``z`` (MGDA-UB, LibMTL's ``rep_grad``); the encoder
  is back-propagated once with the combined feature gradient ``dz``.

Methods that only weigh losses take one backward of ``Σ_i w_i L_i`` and no per-task gradients at all.
Gradients accumulate into ``.grad`` (like ``loss.backward()``), so gradient accumulation keeps working.

Cost (what keeps the ``params`` source at the floor of K backward passes):

* The per-task gradients are kept as ``autograd.grad`` returns them, one tensor per source tensor and task (no
  list of flat rows, no concatenated K×d copy, no float64 copy). The Gramian is summed in float64 from one K×n
  block per source tensor (parameter or feature tensor), stacked chunk by chunk (``GRAMIAN_BLOCK`` columns) into
  one small reused buffer and multiplied in its own precision (at least float32):
  :func:`~taskbalance.balancers.gramian.gramian_of_blocks`, the one place it is computed. The flat K×d J is formed
  only for a method that needs it (``requires == "jacobian"``) or for a reducer.
* Which form of ``d = Jᵀw`` (the rule): the Gramian needs every pair of gradients, so all K of them coexist
  whatever order they are computed in. When they cover the shared update (``params``, ``features``) ``d`` is
  combined from them in place (``g_1`` becomes ``d``: no K×d product buffer, no clone into ``.grad``), which costs
  less time than a (K+1)-th backward pass and no memory beyond the gradients. When they do not (``last_layer``)
  the calls stop at the last layer's output when the layer is a ``Linear`` or ``Conv2d`` run once per forward
  and its positions × positions kernel is smaller than its weight: the Gramian then follows from the layer's input
  and the K output gradients (:func:`~taskbalance.balancers.gramian.layer_gramian`, the autogram identity), and no
  weight gradient is formed K times. The capture (:class:`~taskbalance.balancers.capture.LayerCapture`) is used
  only when exact: its input and output unmodified since the
  forward (version counters; after ``ReLU(inplace=True)`` or ``out += residual`` the step takes the per-task
  weight gradients), and it is kept only until its step. When the features are passed to ``backward``, the same
  calls also take each task's gradient on them and the encoder gets one backward of their combination
  ``dz = Σ_i w_i ∂L_i/∂z`` (no head is traversed twice); without features (or when a head reads a shared tensor
  around them), one reweighted backward of ``Σ_i w_i L_i``.
* Each task's head gradient comes from that task's own ``autograd.grad`` call (the heads' ``Σ_i h_i ∇L_i`` is
  summed from those pieces, no extra backward), and the last call frees the graph unless the encoder still needs it.
* ``is_grads_batched`` (a balancer option, off by default) takes the K gradients in one ``autograd.grad`` call
  vmapped over the K unit cotangents. It returns the same gradients; whether it is faster depends on the device,
  the model and the batch (on CPU it was not), so choose it by measuring (``benchmarks/step_time.py --batched``).
* A per-task gradient that is not finite (with finite losses: an fp16 overflow under a GradScaler) raises
  :class:`~taskbalance.balancers.types.NonFiniteGradientError` before the method runs or anything is written.

Distributed runs (``reducer``, a :class:`~taskbalance.balancers.types.GradientReducer`; None changes nothing):

* the K loss values go through ``reducer.sum_losses`` before anything else, so every process decides on the same
  losses (a non-finite global loss raises on every process alike);
* ``params`` / ``last_layer``: ``reducer.sum_jacobian(J)`` is applied right after J is formed, before the Gramian
  and the aggregation, so the method sees the global per-task gradients and ``d = Jᵀw`` is the global update
  (written into the shared ``.grad`` of ``params``: do not all-reduce those again);
* ``features``: the global feature gradient is the concatenation of the local ones, so the global Gramian is the
  sum of the local ones: ``reducer.sum_gramian(G)``; ``d = Jᵀw`` stays local (a method that needs J on features
  sees the local block: exact for element-wise rules such as GradDrop ``flat``).
* Everything filled by a backward pass (the heads, the shared parameters of ``last_layer``, ``features`` and
  loss-only methods) is local, to be all-reduced by the caller as in ordinary data parallelism.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch
from torch import Tensor

from taskbalance.balancers.capture import LayerCapture
from taskbalance.balancers.checks import (
    check_source,
    checked_aggregation,
    feature_list,
    loss_values,
    ordered_losses,
    source_tensors,
)
from taskbalance.balancers.gradients import StepGradients, TaskGradients, task_gradients
from taskbalance.balancers.gramian import gramian, layer_gramian
from taskbalance.balancers.graph import head_parameters
from taskbalance.balancers.types import (
    GRADIENT_SOURCES,
    Aggregation,
    BalancerError,
    GradientReducer,
    GradientSource,
    NonFiniteGradientError,
    StepInputs,
    StepMethod,
    StepResult,
)
from taskbalance.balancers.writeback import head_coefficients, write_direction, write_weighted_losses

T = TypeVar("T")


def _run(
    method: StepMethod,
    values: Tensor,
    gradients: StepGradients | None,
    write: Callable[[Aggregation], T],
) -> T:
    """The one step sequence: inputs → aggregate → check → write → count."""
    requires = method.requires
    jacobian = features = None
    if gradients is not None and gradients.task is not None and requires == "jacobian":
        jacobian = gradients.task.flat()
        if gradients.source == "features":
            features = tuple(t.detach() for t in gradients.task.tensors)
    inputs = StepInputs(
        losses=values,
        gramian=gradients.gramian if gradients is not None and requires != "losses" else None,
        jacobian=jacobian,
        step=int(method.step_count),
        features=features,
    )
    result = write(checked_aggregation(method, method.aggregate(inputs)))
    method.step_count += 1
    return result


def combine(method: StepMethod, jacobian: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """From per-task gradients ``J`` (K×d) return ``(d, weights)``, advancing the method like a training step."""
    k = len(method.tasks)
    if jacobian.dim() != 2 or jacobian.shape[0] != k:
        raise BalancerError(f"{method.name}: jacobian must be K×d with K={k}, got {tuple(jacobian.shape)}")
    if losses is None:
        if method.requires == "losses" or method.needs_loss_values:
            raise BalancerError(f"{method.name} reads the loss values: pass the task losses to combine()")
        values = torch.zeros(k, dtype=torch.float64)
    else:
        values = loss_values(method, losses)
    j = jacobian.detach()
    gradients = None
    if method.requires != "losses":
        task = TaskGradients([j[0]], None, None)
        task.set_flat(j)
        gradients = StepGradients("params", task, gramian(j))

    def direction(aggregation: Aggregation) -> tuple[Tensor, Tensor]:
        if aggregation.direction is not None:
            return aggregation.direction.to(j), aggregation.weights
        return aggregation.weights.to(j) @ j, aggregation.weights

    return _run(method, values, gradients, direction)


def backward(
    method: StepMethod,
    losses: Mapping[str, Tensor],
    features: Tensor | Sequence[Tensor] | None,
    source: GradientSource,
    diagnose: GradientSource | None,
    reducer: GradientReducer | None = None,
) -> StepResult:
    """Compute what ``method`` needs, let it aggregate, write ``.grad`` (see the module docstring)."""
    capture = method.last_layer_capture
    taken = capture.take() if isinstance(capture, LayerCapture) else None  # every step: never keep a graph alive
    loss_list = ordered_losses(method, losses)
    values = loss_values(method, torch.stack([loss.detach() for loss in loss_list]), reducer)
    needs_gradients = method.requires != "losses"
    if needs_gradients:
        source = check_source(method, source)
    elif diagnose is not None and diagnose not in GRADIENT_SOURCES:
        raise BalancerError(f"diagnose must be one of {GRADIENT_SOURCES}, got {diagnose!r}")
    gradient_source: GradientSource | None = source if needs_gradients else diagnose
    gradients = None
    if gradient_source is not None:
        gradients = _gradients(method, loss_list, gradient_source, features, needs_gradients, reducer, taken)

    def write(aggregation: Aggregation) -> StepResult:
        result = _result(method, values, aggregation, gradients)
        heads = head_coefficients(method, aggregation)
        if gradients is not None and gradients.update is not None:
            write_direction(method, gradients, aggregation, heads)
        else:
            write_weighted_losses(method, loss_list, aggregation, heads)
        return result

    return _run(method, values, gradients, write)


def _gradients(
    method: StepMethod,
    loss_list: list[Tensor],
    source: GradientSource,
    features: Tensor | Sequence[Tensor] | None,
    needs_gradients: bool,
    reducer: GradientReducer | None,
    taken: tuple[Tensor, Tensor] | None = None,
) -> StepGradients:
    """Per-task gradients on ``source``, and the pieces of the update when they can come from the same calls.

    ``params`` / ``features``: the update is combined from the source's gradients. ``last_layer`` with features
    given (and no head reading a shared tensor around them): the calls also take the features' gradients, and the
    encoder gets one backward of their combination (the heads are not traversed twice). Otherwise the update is
    one reweighted backward of the losses.
    """
    tensors = source_tensors(method, source, features)
    on_features: list[Tensor] = []
    if source == "last_layer" and features is not None and method.shared_params:
        on_features = feature_list(features)
    heads: list[Tensor] | None = None
    if source in ("params", "features"):  # a method's own features source must cover the heads; a diagnosis need not
        heads = head_parameters(method, loss_list, tensors if source == "features" else (), strict=needs_gradients)
    elif on_features:
        heads = head_parameters(method, loss_list, on_features, strict=False)
        on_features = on_features if heads is not None else []
    extra = [*on_features, *(heads or [])]
    # the graph is still needed after these calls by a reweighted backward, or by the encoder backward from the
    # features when the calls went past them into the encoder (last_layer)
    retain = heads is None or source == "last_layer"
    capture = method.last_layer_capture
    through_layer = (
        source == "last_layer" and taken is not None and isinstance(capture, LayerCapture)
        and method.requires != "jacobian" and reducer is None and capture.usable(tensors, taken[1])
    )  # fmt: skip
    if through_layer:
        assert taken is not None and isinstance(capture, LayerCapture)
        task, extra_grads, gram = _layer_gradients(method, loss_list, capture, taken, extra, retain)
    else:
        task, extra_grads = task_gradients(loss_list, tensors, extra, retain, method.is_grads_batched)
        if reducer is not None and source != "features":
            task.set_flat(reducer.sum_jacobian(task.flat()))
        gram = task.gramian()
    if reducer is not None and source == "features":
        gram = reducer.sum_gramian(gram).to(torch.float64).cpu()
    finite = torch.isfinite(gram.diagonal())  # G_ii = ‖g_i‖²: finite exactly when g_i is
    if not bool(finite.all()):
        raise NonFiniteGradientError([t for t, ok in zip(method.tasks, finite) if not ok], int(method.step_count))
    # last_layer: the (local) last-layer gradients give that layer's share of the update, unless summed by a reducer
    keep = (
        source != "last_layer" or method.requires == "jacobian"
        or (heads is not None and reducer is None and not through_layer)
    )  # fmt: skip
    gradients = StepGradients(source, task if keep else None, gram)
    if heads is None:
        return gradients
    count = len(on_features)
    gradients.head_params, gradients.head_grads = heads, [row[count:] for row in extra_grads]
    if source == "last_layer":
        rows = [[torch.zeros_like(z) if g is None else g for z, g in zip(on_features, row[:count])]
                for row in extra_grads]
        gradients.update, gradients.through_features = TaskGradients(on_features, rows, None), True
    else:
        gradients.update, gradients.through_features = task, source == "features"
    return gradients


def _layer_gradients(
    method: StepMethod,
    loss_list: list[Tensor],
    capture: LayerCapture,
    taken: tuple[Tensor, Tensor],
    extra: Sequence[Tensor],
    retain: bool,
) -> tuple[TaskGradients, list[list[Tensor | None]], Tensor]:
    """Per-task calls that stop at the last layer's output; G from its input and the output gradients."""
    layer_input, layer_output = taken
    task, extra_grads = task_gradients(loss_list, [layer_output], extra, retain, method.is_grads_batched)
    if task.rows is not None:
        deltas = [row[0] for row in task.rows]
    else:
        assert task.blocks is not None
        deltas = list(task.blocks[0])
    return task, extra_grads, layer_gramian(capture.module, layer_input, deltas)


def _result(
    method: StepMethod, values: Tensor, aggregation: Aggregation, gradients: StepGradients | None
) -> StepResult:
    direction_norm = dots = None
    gram = None if gradients is None else gradients.gramian
    if gradients is not None and gram is not None:
        explicit = aggregation.direction
        if explicit is not None and gradients.task is not None and gradients.task.jacobian is not None:
            jacobian = gradients.task.jacobian
            direction = explicit.to(jacobian)
            dots = (jacobian @ direction).double().cpu()
            direction_norm = float(direction.double().norm())
        else:
            dots = gram @ aggregation.weights
            direction_norm = float((aggregation.weights @ dots).clamp_min(0).sqrt())
    return StepResult(
        tasks=method.tasks,
        losses={t: float(v) for t, v in zip(method.tasks, values)},
        weights={t: float(w) for t, w in zip(method.tasks, aggregation.weights)},
        source=None if gradients is None else gradients.source,
        gramian=gram,
        direction_norm=direction_norm,
        task_direction_dot=dots,
    )
