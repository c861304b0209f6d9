"""The balancer contract: what every multi-task optimization method implements.

A method is a :class:`Balancer` subclass with one job: :meth:`Balancer.aggregate` maps the step's inputs
(task losses, and, when the method needs them, the Gramian ``G = J Jᵀ`` or the Jacobian ``J`` of the per-task
gradients on the chosen gradient source) to an :class:`Aggregation`: the coefficients ``w`` such that the
shared update is ``d = Jᵀ w`` (or an explicit ``d`` for the few methods that are not weightings of the task
gradients). A method is pure: options, state (buffers), ``aggregate`` and hooks declared as class attributes
(``needs_post_step_losses``, ``advances_per_epoch``). Everything else (checking the losses, counting steps,
autograd, the write-back into ``.grad``) is the engine's (:mod:`taskbalance.balancers.engine` and the modules
of its parts), to which the public entry points :meth:`Balancer.backward`, :meth:`Balancer.combine` and
:meth:`Balancer.post_step` hand the balancer. Layers (each imports only those below it): ``types`` → the engine's
parts (``gramian``, ``capture``, ``checks``, ``graph``, ``gradients``, ``writeback``) → ``engine`` → ``base`` →
``registry`` → method modules (which may also import the shared ``solvers`` and ``helpers``, never each other).
The package docstring has the whole graph.

Scale convention: ``uniform`` is ``d = Σ_i g_i`` (the gradient of the summed losses). Methods whose official
code returns a convex combination and multiplies it by K (CAGrad, Nash-MTL, FairGrad, IMGrad, ...) keep that
factor, so every method lives on the same scale as the summed loss. Each method's docstring states its choice.

State: everything a method carries between steps is in ``state_dict()`` (buffers, or ``get_extra_state``), so a
resumed run continues exactly. Methods that draw random numbers derive from :class:`RandomizedBalancer`, which
owns a seeded generator and saves its state. ``supported_sources`` lists the gradient sources a method accepts
(checked at construction and at every ``backward``).

Lifetime: on the ``last_layer`` source a balancer puts a forward hook on the user's last shared layer (a
:class:`~taskbalance.balancers.capture.LayerCapture`). :meth:`Balancer.close`, a ``with`` block and garbage
collection (a ``weakref.finalize`` that holds the capture, never the balancer) remove it.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from taskbalance.balancers import engine
from taskbalance.balancers.capture import LayerCapture
from taskbalance.balancers.checks import check_source, loss_values
from taskbalance.balancers.types import (
    GRADIENT_SOURCES,
    Aggregation,
    BalancerError,
    GradientReducer,
    GradientSource,
    HeadGradients,
    NonFiniteGradientError,
    NonFiniteLossError,
    Requirement,
    StepInputs,
    StepResult,
)

__all__ = [
    "GRADIENT_SOURCES",
    "Aggregation",
    "Balancer",
    "BalancerError",
    "GradientSource",
    "HeadGradients",
    "NoOptions",
    "NonFiniteGradientError",
    "NonFiniteLossError",
    "RandomizedBalancer",
    "Requirement",
    "SeededOptions",
    "StepInputs",
    "StepResult",
    "infer_last_layer",
]


class NoOptions(BaseModel):
    """Options of a method that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SeededOptions(BaseModel):
    """Options of a method that only draws random numbers (base of the options of every randomized method)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = Field(0, ge=0, description="seed of the method's own random generator (saved in state_dict)")


def _as_parameters(owner: nn.Module | Sequence[Tensor] | Tensor | None, what: str) -> list[Tensor]:
    if owner is None:
        return []
    candidates: list[Tensor]
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


def _bears_weights(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, (_ConvNd, nn.Linear)) and isinstance(weight, Tensor) and weight.requires_grad


def infer_last_layer(shared: nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` of the last weight-bearing layer of ``shared``: the last convolution or linear layer
    (in registration order) with a trainable weight, never a normalisation layer."""
    last: tuple[str, nn.Module] | None = None
    for name, module in shared.named_modules():
        if _bears_weights(module):
            last = (name, module)
    if last is None:
        raise BalancerError(
            "the shared module has no convolution or linear layer with a trainable weight; name the last layer "
            "with last_layer=... (a module, its parameters, or its dotted path in shared)"
        )
    return last


def _describe(module: nn.Module) -> str:
    weight = getattr(module, "weight", None)
    shape = "×".join(map(str, weight.shape)) if isinstance(weight, Tensor) else "no weight"
    return f"{type(module).__name__} (weight {shape})"


def _resolve_last_layer(
    shared: nn.Module | Sequence[Tensor] | None, last_layer: nn.Module | Sequence[Tensor] | str | None
) -> tuple[nn.Module | Sequence[Tensor] | None, str | None]:
    """The last layer and its name: given as a module, tensors or a dotted path in ``shared``, or inferred."""
    if isinstance(last_layer, str):
        if not isinstance(shared, nn.Module):
            raise BalancerError(f"last_layer={last_layer!r} names a module of shared, so shared must be a module")
        try:
            return shared.get_submodule(last_layer), last_layer
        except AttributeError:
            raise BalancerError(f"last_layer={last_layer!r} is not a module of the shared encoder") from None
    if last_layer is None:
        if isinstance(shared, nn.Module) and any(p.requires_grad for p in shared.parameters()):
            name, module = infer_last_layer(shared)
            return module, name
        return None, None
    if isinstance(last_layer, nn.Module):
        if isinstance(shared, nn.Module):
            for name, module in shared.named_modules():
                if module is last_layer:
                    return last_layer, name
        return last_layer, _describe(last_layer)
    return last_layer, f"{len(_as_parameters(last_layer, 'last_layer'))} given tensor(s)"


class Balancer(nn.Module):
    """Base class of every method. Subclasses set the class attributes and implement :meth:`aggregate`.

    Args:
        tasks: task names, in the order of the weights.
        shared: the shared encoder (module or parameters). Needed by :meth:`backward`, not by :meth:`combine`.
        last_layer: the last shared layer: a module, its parameters, or its dotted path in ``shared`` (e.g.
            ``"layer4.1.conv2"``); inferred from a ``shared`` module when omitted (its last convolution or linear
            layer). ``last_layer_name`` says which layer it is.
        source: where task gradients are taken: ``params`` (all shared parameters), ``last_layer``, or
            ``features`` (the shared representation passed to :meth:`backward`). Defaults to the method's own.
            Refused for methods that take no gradients (``requires == "losses"``): use ``diagnose=`` in
            :meth:`backward` to log gradients for them.
        head_gradients: ``weighted`` or ``raw`` task-specific gradients; defaults to what the method's official
            code does.
        is_grads_batched: take the K per-task gradients in one vmapped ``autograd.grad`` call (see the engine);
            off by default, to be chosen by measurement.
        **options: the method's options, validated by its ``Options`` model.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: What aggregate() needs (an instance may narrow it from its options: see :meth:`requires_for`).
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
    #: The validated options (a method annotates its own ``Options`` type here).
    options: BaseModel
    #: Steps taken (a buffer, so a resumed run counts on).
    step_count: Tensor

    def __init__(
        self,
        tasks: Sequence[str],
        shared: nn.Module | Sequence[Tensor] | None = None,
        last_layer: nn.Module | Sequence[Tensor] | str | None = None,
        source: GradientSource | None = None,
        head_gradients: HeadGradients | None = None,
        is_grads_batched: bool = False,
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
        self.requires = self.requires_for(self.options)
        self.needs_loss_values = self.needs_loss_values_for(self.options)
        if source is not None and self.requires == "losses":
            raise BalancerError(
                f"{self.name} weighs the losses only and takes no per-task gradients, so source={source!r} would "
                "have no effect; to log gradients pass diagnose=... to backward()"
            )
        self.source: GradientSource = check_source(self, source or self.default_source)
        self.head_gradients: HeadGradients = head_gradients or self.default_head_gradients
        if self.head_gradients not in ("weighted", "raw"):
            raise BalancerError(f"{self.name}: head_gradients must be 'weighted' or 'raw', got {self.head_gradients!r}")
        self.is_grads_batched = bool(is_grads_batched)
        self.shared_params = _as_parameters(shared, "shared")
        last, self.last_layer_name = _resolve_last_layer(shared if self.shared_params else None, last_layer)
        self.last_layer_params = _as_parameters(last, "last_layer")
        # on the last_layer source the engine takes the Gramian from the layer's input and output gradients
        capture = None
        if isinstance(last, nn.Module) and self.source == "last_layer" and self.requires != "losses":
            capture = LayerCapture(last)
        self.last_layer_capture = capture
        # the hook goes with the balancer: the finalizer holds the capture, never the balancer
        self._release = weakref.finalize(self, capture.close) if capture is not None else None
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))

    @classmethod
    def requires_for(cls, options: Any) -> Requirement:
        """What :meth:`aggregate` needs with these options (default: the class's ``requires``)."""
        return cls.requires

    @classmethod
    def needs_loss_values_for(cls, options: Any) -> bool:
        """Whether the method reads the loss values with these options (default: ``needs_loss_values``)."""
        return cls.needs_loss_values

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

    def learn_after_step(self, losses: Tensor) -> None:
        """Hook of methods with ``needs_post_step_losses``: the checked K losses after the optimizer step."""

    # ----------------------------------------------------------------- entry points (the engine does the work)
    def combine(self, jacobian: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Functional core: from per-task gradients ``J`` (K×d) return ``(d, weights)``.

        Advances the method's state exactly like a training step does, so stateful methods can be driven
        without a model (the toy benchmark does this).
        """
        return engine.combine(self, jacobian, losses)

    def backward(
        self,
        losses: Mapping[str, Tensor],
        features: Tensor | Sequence[Tensor] | None = None,
        source: GradientSource | None = None,
        diagnose: GradientSource | None = None,
        reducer: GradientReducer | None = None,
    ) -> StepResult:
        """Fill ``.grad`` of every parameter that the losses depend on, as the method prescribes.

        Args:
            losses: one scalar loss per task (keys: the balancer's tasks).
            features: the shared representation (needed when the source, or ``diagnose``, is ``features``; with
                ``last_layer`` it spares a second pass through the heads).
            source: override the balancer's gradient source for this call (refused for loss-only methods).
            diagnose: also compute the per-task gradients on this source for logging, when the method itself
                does not need gradients (loss-weighting methods); ignored when the method computes them anyway.
            reducer: sums per-process quantities in a data-parallel run (see :mod:`taskbalance.balancers.engine`).
        """
        if source is not None and self.requires == "losses":
            raise BalancerError(
                f"{self.name} takes no per-task gradients: source={source!r} has no effect; use diagnose="
            )
        return engine.backward(self, losses, features, source or self.source, diagnose, reducer)

    def post_step(self, losses: Mapping[str, Tensor] | Tensor, reducer: GradientReducer | None = None) -> None:
        """After ``optimizer.step()``: hand the losses re-evaluated on the same batch (dict or K-vector) to methods
        that learn from them (``needs_post_step_losses``, FAMO); a no-op for the others."""
        if self.needs_post_step_losses:
            self.learn_after_step(loss_values(self, losses, reducer))

    def close(self) -> None:
        """Remove the forward hook on the last layer and drop its capture (also done on garbage collection and by
        ``with``). The balancer stays usable: its later ``last_layer`` steps take the exact per-task gradients."""
        if self._release is not None:
            self._release()

    def __enter__(self) -> Balancer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def extra_repr(self) -> str:
        return f"tasks={self.tasks}, source={self.source}, options={self.options.model_dump()}"


class RandomizedBalancer(Balancer):
    """Base of the methods that draw random numbers (task orders, dropout masks).

    They own a CPU :class:`torch.Generator` seeded by the option ``seed`` (their ``Options`` extend
    :class:`SeededOptions`); its state travels in ``state_dict()`` (``_extra_state``), so a resumed run draws
    exactly the numbers it would have drawn, and the draws do not depend on the device or the global RNG.
    """

    Options: ClassVar[type[BaseModel]] = SeededOptions
    options: SeededOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator().manual_seed(self.options.seed)

    def get_extra_state(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
