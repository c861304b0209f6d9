"""The bottom layer of :mod:`taskbalance.balancers`: the data a step passes around, the errors, and two protocols.

Nothing here imports another module of the package. Above it sit, in this order (each layer imports only the
ones below): the engine's parts (:mod:`~taskbalance.balancers.gramian`, :mod:`~taskbalance.balancers.capture`,
:mod:`~taskbalance.balancers.checks`, :mod:`~taskbalance.balancers.graph`, :mod:`~taskbalance.balancers.gradients`,
:mod:`~taskbalance.balancers.writeback`) and :mod:`~taskbalance.balancers.engine` (the step sequence), then
:mod:`~taskbalance.balancers.base` (the :class:`~taskbalance.balancers.base.Balancer` contract, whose public
entry points hand the balancer to the engine), then :mod:`~taskbalance.balancers.registry` and the method modules.

* :class:`StepInputs` is what a method sees at one step, :class:`Aggregation` what it decides,
  :class:`StepResult` what one ``backward`` reports.
* :class:`StepMethod` is the part of a balancer the engine uses (so the engine needs no import of the class).
* :class:`GradientReducer` is the hook through which a distributed runner sums per-process quantities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor

GradientSource = Literal["params", "last_layer", "features"]
Requirement = Literal["losses", "gramian", "jacobian"]
HeadGradients = Literal["weighted", "raw"]
GRADIENT_SOURCES: tuple[GradientSource, ...] = ("params", "last_layer", "features")


class BalancerError(ValueError):
    """A user mistake in how a balancer is built or called (bad option, wrong tasks, missing tensors)."""


class NonFiniteLossError(FloatingPointError):
    """A task loss is NaN or infinite; raised before any gradient is touched."""

    def __init__(self, task: str, value: float, step: int) -> None:
        super().__init__(f"loss of task {task!r} is {value} at balancer step {step}; no gradient was written")
        self.task = task
        self.value = value
        self.step = step


class NonFiniteGradientError(FloatingPointError):
    """A per-task gradient on the method's source is NaN or infinite (finite losses: typically an fp16 overflow
    under a GradScaler). Raised before the method runs and before any ``.grad`` is written, so a mixed-precision
    loop can skip the step and lower its loss scale (``scaler.update(scaler.get_scale() * backoff)``)."""

    def __init__(self, tasks: list[str], step: int) -> None:
        super().__init__(
            f"the gradients of task(s) {tasks} are not finite at balancer step {step}; no gradient was written"
        )
        self.tasks = tasks
        self.step = step


@dataclass(frozen=True)
class StepInputs:
    """What a method sees at one step. ``gramian`` is float64 on the CPU; ``jacobian`` stays on the model's device.

    ``gramian`` is set when the method's ``requires`` is ``gramian`` or ``jacobian``, ``jacobian`` only for
    ``jacobian``. ``features`` (detached) are the shared tensors the rows of ``jacobian`` are taken on, set only
    when the gradient source is ``features`` and the method needs the Jacobian (GradDrop's ``sign(A)`` uses them).
    """

    losses: Tensor
    gramian: Tensor | None = None
    jacobian: Tensor | None = None
    step: int = 0
    features: tuple[Tensor, ...] | None = None


@dataclass(frozen=True)
class Aggregation:
    """A method's decision for one step.

    ``weights`` (K,) are the coefficients of the task gradients in the shared update (``d = Jᵀ w``), float64 CPU.
    ``direction`` is set only by methods whose update is not a weighting of the task gradients (GradDrop, DB-MTL);
    it is a flat vector over the gradient source and ``weights`` then describe the method's own per-task scaling.
    ``head_weights`` are the coefficients of the task losses for the task-specific parameters (None: the same
    as ``weights`` when the method's heads are weighted, ones when they are raw; see ``Balancer.head_gradients``).
    """

    weights: Tensor
    direction: Tensor | None = None
    head_weights: Tensor | None = None


def _norms(gramian: Tensor) -> Tensor:
    return gramian.diagonal().clamp_min(0).sqrt()


@dataclass
class StepResult:
    """What one :meth:`Balancer.backward` did, for logging and diagnosis (all CPU, detached).

    ``gramian`` is ``None`` when no per-task gradient was computed (a loss-only method without ``diagnose``);
    the gradient diagnostics then come back empty (``grad_norms`` is ``{}``) or ``None`` (the matrices).
    """

    tasks: tuple[str, ...]
    losses: dict[str, float]
    weights: dict[str, float]
    source: GradientSource | None = None
    gramian: Tensor | None = None
    direction_norm: float | None = None
    task_direction_dot: Tensor | None = field(default=None, repr=False)

    @property
    def grad_norms(self) -> dict[str, float]:
        """‖g_i‖ on the gradient source; empty when no per-task gradient was computed this step."""
        if self.gramian is None:
            return {}
        return {task: float(n) for task, n in zip(self.tasks, _norms(self.gramian))}

    def pairwise_cosines(self) -> Tensor | None:
        """K×K cosine similarity between task gradients (0 where a gradient is zero)."""
        if self.gramian is None:
            return None
        norms = _norms(self.gramian)
        outer = torch.outer(norms, norms)
        return torch.where(outer > 0, self.gramian / outer.clamp_min(1e-300), torch.zeros_like(outer))

    @property
    def cosines_to_update(self) -> dict[str, float] | None:
        """cos(g_i, d) between each task gradient and the combined update (the paper's Fig. 7 signal)."""
        if self.gramian is None or self.task_direction_dot is None or not self.direction_norm:
            return None
        norms = _norms(self.gramian)
        cos = torch.where(norms > 0, self.task_direction_dot / (norms * self.direction_norm).clamp_min(1e-300), 0.0)
        return {task: float(c) for task, c in zip(self.tasks, cos)}


class GradientReducer(Protocol):
    """Sums per-process quantities across the processes of a data-parallel run (see the engine's docstring).

    Each method returns a tensor of the same shape (and device) as its argument, holding the global quantity;
    a reducer may average instead of summing, the engine only needs every process to get the same result.
    """

    def sum_jacobian(self, jacobian: Tensor) -> Tensor:
        """K×d per-task gradients on the ``params`` or ``last_layer`` source (on the model's device)."""
        ...

    def sum_gramian(self, gramian: Tensor) -> Tensor:
        """K×K Gramian of the ``features`` source (float64, CPU)."""
        ...

    def sum_losses(self, values: Tensor) -> Tensor:
        """K loss values (float64, CPU)."""
        ...


class StepMethod(Protocol):
    """What the engine reads from a balancer (``Balancer`` satisfies it; the engine never imports that class)."""

    @property
    def name(self) -> str:
        """The method's registered name (for messages)."""
        ...

    tasks: tuple[str, ...]
    requires: Requirement
    needs_loss_values: bool

    @property
    def supported_sources(self) -> tuple[GradientSource, ...]:
        """The gradient sources the method accepts."""
        ...

    head_gradients: HeadGradients
    is_grads_batched: bool
    shared_params: list[Tensor]
    last_layer_params: list[Tensor]

    @property
    def last_layer_capture(self) -> object | None:
        """The :class:`~taskbalance.balancers.capture.LayerCapture` of the last layer's forward (None: the per-task
        weight gradients are used)."""
        ...

    step_count: Tensor

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        """The method's decision for one step."""
        ...

