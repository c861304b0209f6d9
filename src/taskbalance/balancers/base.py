"""The balancer contract: what every multi-task optimization method implements, and what one step returns.

A method is a :class:`Balancer` subclass with one job: :meth:`Balancer.aggregate` maps the step's inputs
(task losses, and, when the method needs them, the Gramian ``G = J Jᵀ`` or the Jacobian ``J`` of the per-task
gradients on the chosen gradient source) to an :class:`Aggregation`: the coefficients ``w`` such that the
shared update is ``d = Jᵀ w`` (or an explicit ``d`` for the few methods that are not weightings of the task
gradients). Everything model-related (which tensors the gradients are taken on, writing ``.grad``, the heads)
lives in :mod:`taskbalance.balancers.engine`, so a method never touches a model.

Scale convention: ``uniform`` is ``d = Σ_i g_i`` (the gradient of the summed losses). Methods whose official
code returns a convex combination and multiplies it by K (CAGrad, Nash-MTL, FairGrad, IMGrad, ...) keep that
factor, so every method lives on the same scale as the summed loss. Each method's docstring states its choice.

State: everything a method carries between steps is in ``state_dict()`` (buffers, or ``get_extra_state``), so a
resumed run continues exactly. Methods that draw random numbers derive from :class:`RandomizedBalancer`, which
owns a seeded generator and saves its state. ``supported_sources`` lists the gradient sources a method accepts
(checked at construction and at every ``backward``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

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


class NoOptions(BaseModel):
    """Options of a method that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SeededOptions(BaseModel):
    """Options of a method that only draws random numbers (base of the options of every randomized method)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = Field(0, ge=0, description="seed of the method's own random generator (saved in state_dict)")


@dataclass(frozen=True)
class StepInputs:
    """What a method sees at one step. ``gramian`` is float64 on the CPU; ``jacobian`` stays on the model's device.

    ``features`` (detached) are the shared tensors the rows of ``jacobian`` are taken on, set only when the
    gradient source is ``features`` and the method needs the Jacobian (GradDrop's ``sign(A)`` uses them).
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


@dataclass
class StepResult:
    """What one :meth:`Balancer.backward` did, for logging and diagnosis (all CPU, detached)."""

    tasks: tuple[str, ...]
    losses: dict[str, float]
    weights: dict[str, float]
    source: GradientSource | None = None
    gramian: Tensor | None = None
    direction_norm: float | None = None
    task_direction_dot: Tensor | None = field(default=None, repr=False)

    @property
    def grad_norms(self) -> dict[str, float] | None:
        """‖g_i‖ on the gradient source (None when the method needed no gradients and no diagnosis was asked)."""
        if self.gramian is None:
            return None
        norms = self.gramian.diagonal().clamp_min(0).sqrt()
        return {task: float(n) for task, n in zip(self.tasks, norms)}

    def pairwise_cosines(self) -> Tensor | None:
        """K×K cosine similarity between task gradients (0 where a gradient is zero)."""
        if self.gramian is None:
            return None
        norms = self.gramian.diagonal().clamp_min(0).sqrt()
        outer = torch.outer(norms, norms)
        return torch.where(outer > 0, self.gramian / outer.clamp_min(1e-300), torch.zeros_like(outer))

    @property
    def cosines_to_update(self) -> dict[str, float] | None:
        """cos(g_i, d) between each task gradient and the combined update (the paper's Fig. 7 signal)."""
        if self.gramian is None or self.task_direction_dot is None or not self.direction_norm:
            return None
        norms = self.gramian.diagonal().clamp_min(0).sqrt()
        cos = torch.where(norms > 0, self.task_direction_dot / (norms * self.direction_norm).clamp_min(1e-300), 0.0)
        return {task: float(c) for task, c in zip(self.tasks, cos)}


def _as_parameters(owner: nn.Module | Sequence[Tensor] | Tensor | None, what: str) -> list[Tensor]:
    if owner is None:
        return []
    if isinstance(owner, nn.Module):
        candidates = list(owner.parameters())
    elif isinstance(owner, Tensor):
        candidates = [owner]
    else:
        candidates = list(owner)
    params: list[Tensor] = []
    seen: set[int] = set()
    for p in candidates:
        if not isinstance(p, Tensor):
            raise BalancerError(f"{what} must be a module or tensors, got an item of type {type(p).__name__}")
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return params


def infer_last_layer(shared: nn.Module) -> nn.Module:
    """The last module (in registration order) of ``shared`` that owns parameters of its own."""
    last: nn.Module | None = None
    for module in shared.modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            last = module
    if last is None:
        raise BalancerError("the shared module has no trainable parameters, so it has no last layer")
    return last


class Balancer(nn.Module):
    """Base class of every method. Subclasses set the class attributes and implement :meth:`aggregate`.

    Args:
        tasks: task names, in the order of the weights.
        shared: the shared encoder (module or parameters). Needed by :meth:`backward`, not by :meth:`combine`.
        last_layer: the last shared layer (module or parameters); inferred from ``shared`` when omitted.
        source: where task gradients are taken: ``params`` (all shared parameters), ``last_layer``, or
            ``features`` (the shared representation passed to :meth:`backward`). Defaults to the method's own.
        head_gradients: ``weighted`` or ``raw`` task-specific gradients; defaults to what the method's official
            code does.
        **options: the method's options, validated by its ``Options`` model.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: What aggregate() needs (an instance may narrow it from its options, e.g. IMTL-L needs only losses).
    requires: Requirement = "losses"
    default_source: ClassVar[GradientSource] = "params"
    default_head_gradients: ClassVar[HeadGradients] = "weighted"
    #: Gradient sources the method works on (explicit-direction methods cannot use ``last_layer``).
    supported_sources: ClassVar[tuple[GradientSource, ...]] = GRADIENT_SOURCES
    #: Whether the method reads the loss values although it needs gradients (DB-MTL's log-losses).
    needs_loss_values: bool = False
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Whether :meth:`post_step` must be called after the optimizer step with the re-evaluated losses (FAMO).
    needs_post_step_losses: ClassVar[bool] = False
    #: Whether :meth:`epoch_end` changes the method (DWA, STCH); runners call it every epoch regardless.
    advances_per_epoch: ClassVar[bool] = False

    def __init__(
        self,
        tasks: Sequence[str],
        shared: nn.Module | Sequence[Tensor] | None = None,
        last_layer: nn.Module | Sequence[Tensor] | None = None,
        source: GradientSource | None = None,
        head_gradients: HeadGradients | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        tasks = tuple(tasks)
        if not tasks:
            raise BalancerError(f"{self.name}: at least one task is needed")
        if len(set(tasks)) != len(tasks) or not all(isinstance(t, str) and t for t in tasks):
            raise BalancerError(f"{self.name}: task names must be distinct non-empty strings, got {tasks}")
        self.tasks = tasks
        self.options = self.Options(**options)
        self.source: GradientSource = self.check_source(source or self.default_source)
        self.head_gradients: HeadGradients = head_gradients or self.default_head_gradients
        if self.head_gradients not in ("weighted", "raw"):
            raise BalancerError(f"{self.name}: head_gradients must be 'weighted' or 'raw', got {self.head_gradients!r}")
        self.shared_params = _as_parameters(shared, "shared")
        if last_layer is None and isinstance(shared, nn.Module) and self.shared_params:
            last_layer = infer_last_layer(shared)
        self.last_layer_params = _as_parameters(last_layer, "last_layer")
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))

    @property
    def num_tasks(self) -> int:
        """K, the number of tasks."""
        return len(self.tasks)

    # ----------------------------------------------------------------- the method
    def aggregate(self, inputs: StepInputs) -> Aggregation:
        """Decide this step's weights (and, for a few methods, an explicit direction)."""
        raise NotImplementedError

    def epoch_end(self) -> None:
        """Hook for epoch-level methods (DWA, STCH): call once at the end of every training epoch."""

    def post_step(self, losses: Mapping[str, Tensor] | Tensor) -> None:
        """Hook for methods that learn from the losses after the optimizer step (FAMO)."""

    # ----------------------------------------------------------------- entry points
    def combine(self, jacobian: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Functional core: from per-task gradients ``J`` (K×d) return ``(d, weights)``.

        Advances the method's state exactly like a training step does, so stateful methods can be driven
        without a model (the toy benchmark does this).
        """
        if jacobian.dim() != 2 or jacobian.shape[0] != self.num_tasks:
            raise BalancerError(f"{self.name}: jacobian must be K×d with K={self.num_tasks}, got {tuple(jacobian.shape)}")
        if losses is None:
            if self.requires == "losses" or self.needs_loss_values:
                raise BalancerError(f"{self.name} reads the loss values: pass the task losses to combine()")
            losses = torch.zeros(self.num_tasks, dtype=torch.float64)
        losses = self._check_losses(losses.detach().reshape(-1).to(torch.float64).cpu())
        inputs = StepInputs(
            losses=losses,
            gramian=(jacobian.detach().double() @ jacobian.detach().double().T).cpu(),
            jacobian=jacobian.detach(),
            step=int(self.step_count),
        )
        aggregation = self._checked(self.aggregate(inputs))
        self.step_count += 1
        if aggregation.direction is not None:
            return aggregation.direction.to(jacobian), aggregation.weights
        return aggregation.weights.to(jacobian) @ jacobian, aggregation.weights

    def backward(
        self,
        losses: Mapping[str, Tensor],
        features: Tensor | Sequence[Tensor] | None = None,
        source: GradientSource | None = None,
        diagnose: GradientSource | None = None,
    ) -> StepResult:
        """Fill ``.grad`` of every parameter that the losses depend on, as the method prescribes.

        Args:
            losses: one scalar loss per task (keys: the balancer's tasks).
            features: the shared representation (needed when the source, or ``diagnose``, is ``features``).
            source: override the balancer's gradient source for this call.
            diagnose: also compute the per-task gradients on this source for logging, when the method itself
                does not need gradients (loss-weighting methods); ignored when the method computes them anyway.
        """
        from taskbalance.balancers.engine import run_backward

        return run_backward(self, losses, features=features, source=source or self.source, diagnose=diagnose)

    # ----------------------------------------------------------------- helpers for subclasses and the engine
    def check_source(self, source: str) -> GradientSource:
        """``source`` if it is a gradient source this method supports, else a :class:`BalancerError`."""
        if source not in GRADIENT_SOURCES:
            raise BalancerError(f"{self.name}: source must be one of {GRADIENT_SOURCES}, got {source!r}")
        if source not in self.supported_sources:
            raise BalancerError(f"{self.name} supports the gradient sources {self.supported_sources}, not {source!r}")
        return source  # type: ignore[return-value]

    def _check_losses(self, losses: Tensor) -> Tensor:
        if losses.numel() != self.num_tasks:
            raise BalancerError(f"{self.name}: expected {self.num_tasks} losses, got {losses.numel()}")
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            raise NonFiniteLossError(self.tasks[bad], float(losses[bad]), int(self.step_count))
        return losses

    def _checked(self, aggregation: Aggregation) -> Aggregation:
        weights = aggregation.weights
        if weights.shape != (self.num_tasks,):
            raise RuntimeError(f"{self.name} returned weights of shape {tuple(weights.shape)}")
        if not bool(torch.isfinite(weights).all()):
            raise FloatingPointError(f"{self.name} produced non-finite weights {weights.tolist()} at step {int(self.step_count)}")
        direction = aggregation.direction
        if direction is not None and (direction.dim() != 1 or not bool(torch.isfinite(direction).all())):
            raise FloatingPointError(f"{self.name} produced a non-finite or non-flat direction at step {int(self.step_count)}")
        return Aggregation(
            weights=weights.detach().to(torch.float64).cpu(),
            direction=aggregation.direction,
            head_weights=None if aggregation.head_weights is None else aggregation.head_weights.detach().double().cpu(),
        )

    def head_coefficients(self, aggregation: Aggregation) -> Tensor:
        """Coefficients of the task losses for the task-specific parameters."""
        if aggregation.head_weights is not None:
            return aggregation.head_weights
        if self.head_gradients == "raw":
            return torch.ones(self.num_tasks, dtype=torch.float64)
        return aggregation.weights

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, source={self.source}, options={self.options.model_dump()}"


class RandomizedBalancer(Balancer):
    """Base of the methods that draw random numbers (task orders, dropout masks).

    They own a CPU :class:`torch.Generator` seeded by the option ``seed`` (their ``Options`` extend
    :class:`SeededOptions`); its state travels in ``state_dict()`` (``_extra_state``), so a resumed run draws
    exactly the numbers it would have drawn, and the draws do not depend on the device or the global RNG.
    """

    Options: ClassVar[type[BaseModel]] = SeededOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator().manual_seed(self.options.seed)

    def get_extra_state(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
