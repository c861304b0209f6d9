"""One training step around a balancer, shared by every loop: the trainer, the protocol runner, the toy runner and
a user's own loop.

A step of :class:`StepDriver` is::

    forward() → optimizer.zero_grad → extra.backward() (if any) → backward (the balancer's, by default)
      → gradient hook (e.g. an all-reduce over ranks) → clip_grad_norm_ → optimizer.step → scheduler.step (per step)
      → forward() again under no_grad, then method.post_step(new losses), when the method declares
        ``needs_post_step_losses`` (FAMO)

and :meth:`StepDriver.epoch_end` closes an epoch: the method's ``epoch_end`` (DWA, STCH), then a per-epoch
scheduler. A non-finite loss or method output, found before the update (``backward``) or after it (``post_step``),
raises :class:`TrainingDiverged`, whose one-line message names the task and the step.

The backward strategy is pluggable: :meth:`StepDriver.for_balancer` uses ``balancer.backward`` (features,
diagnostics and a gradient reducer passed through); the toy runner drives many balancers at once with its own
strategy over ``combine``. The driver holds no state besides the count of steps it has taken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from taskbalance.balancers.base import Balancer
from taskbalance.balancers.types import GradientReducer, GradientSource, NonFiniteLossError, StepResult


@dataclass(frozen=True)
class Forward:
    """What a forward pass gives the step.

    ``losses``: one scalar loss per task. ``features``: the shared representation (for the ``features`` gradient
    source and diagnostics). ``extra``: a loss back-propagated as it is, outside the balancing (e.g. adaptors that
    measure a detached student), before the balancer's backward.
    """

    losses: Mapping[str, Tensor]
    features: Tensor | Sequence[Tensor] | None = None
    extra: Tensor | None = None


#: The runner's forward pass: a :class:`Forward`, or just the task losses. Called once per step, and a second
#: time under ``torch.no_grad()`` after the update when the method needs the new losses.
ForwardFn = Callable[[], "Forward | Mapping[str, Tensor]"]
ResultT = TypeVar("ResultT")
#: Fills ``.grad`` from a forward pass (``diagnose``: an extra gradient source to measure) and describes the step.
BackwardFn = Callable[[Forward, "GradientSource | None"], ResultT]


class MethodHooks(Protocol):
    """What the driver needs of a method besides its backward: the hooks around the optimizer step."""

    @property
    def needs_post_step_losses(self) -> bool: ...

    def post_step(self, losses: Mapping[str, Tensor]) -> None: ...

    def epoch_end(self) -> None: ...


class TrainingDiverged(FloatingPointError):
    """A task loss (or a method's weights) became NaN or infinite; the message names the task and the step."""


@dataclass(frozen=True)
class StepOptions:
    """How the update is applied.

    ``scheduler`` is stepped after every optimizer step (``schedule_per="step"``) or at every :meth:`epoch_end`
    (``"epoch"``). ``clip``: the parameters whose global gradient norm is clipped to ``max_norm`` (0: no
    clipping). ``gradient_hook`` runs after the backward and before clipping (e.g. averaging ``.grad`` over ranks).
    """

    scheduler: LRScheduler | None = None
    schedule_per: Literal["step", "epoch"] = "step"
    clip: Sequence[Tensor] = ()
    max_norm: float = 0.0
    gradient_hook: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.max_norm < 0 or (self.max_norm > 0 and not self.clip):
            raise ValueError(f"StepOptions: max_norm must be >= 0 and, when > 0, come with the parameters to clip "
                             f"(clip=...); got max_norm={self.max_norm} and {len(self.clip)} parameter(s)")
        if self.schedule_per not in ("step", "epoch"):
            raise ValueError(f"StepOptions: schedule_per must be 'step' or 'epoch', got {self.schedule_per!r}")


class _ReducedHooks:
    """A balancer's hooks with the post-step losses going through the run's reducer."""

    def __init__(self, balancer: Balancer, reducer: GradientReducer | None) -> None:
        self.balancer, self.reducer = balancer, reducer

    @property
    def needs_post_step_losses(self) -> bool:
        return self.balancer.needs_post_step_losses

    def post_step(self, losses: Mapping[str, Tensor]) -> None:
        self.balancer.post_step(losses, reducer=self.reducer)

    def epoch_end(self) -> None:
        self.balancer.epoch_end()


def _as_forward(value: Forward | Mapping[str, Tensor]) -> Forward:
    return value if isinstance(value, Forward) else Forward(losses=value)


class StepDriver(Generic[ResultT]):
    """The step protocol around ``method``; see the module docstring.

    Args:
        method: the balancer (or an object with the same hooks, e.g. the toy runner's group of balancers).
        optimizer: steps every parameter that ``backward`` fills (the model's and the balancer's own, e.g. UW's).
        backward: the backward strategy (:meth:`for_balancer` uses ``balancer.backward``).
        options: scheduler, clipping, gradient hook.
        steps_done: steps already taken (a resumed run), so that errors name the right step.
    """

    def __init__(self, method: MethodHooks, optimizer: Optimizer, backward: BackwardFn[ResultT],
                 options: StepOptions | None = None, steps_done: int = 0) -> None:
        self.method = method
        self.optimizer = optimizer
        self.backward = backward
        self.options = options or StepOptions()
        self.steps_done = steps_done

    @staticmethod
    def for_balancer(balancer: Balancer, optimizer: Optimizer, options: StepOptions | None = None,
                     steps_done: int = 0, reducer: GradientReducer | None = None) -> StepDriver[StepResult]:
        """A driver whose backward is ``balancer.backward``; ``reducer`` (data-parallel runs) goes to ``backward``
        and ``post_step``, so every process decides on the global losses and gradients."""

        def backward(forward: Forward, diagnose: GradientSource | None) -> StepResult:
            return balancer.backward(forward.losses, features=forward.features, diagnose=diagnose, reducer=reducer)

        return StepDriver(_ReducedHooks(balancer, reducer), optimizer, backward, options, steps_done)

    def step(self, forward: ForwardFn, diagnose: GradientSource | None = None) -> ResultT:
        """Take one training step (see the module docstring); returns what the backward strategy returned."""
        number = self.steps_done + 1
        current = _as_forward(forward())
        self.optimizer.zero_grad(set_to_none=True)
        if current.extra is not None:
            current.extra.backward()
        try:
            result = self.backward(current, diagnose)
        except NonFiniteLossError as error:
            raise TrainingDiverged(f"the loss of task {error.task!r} is {error.value} at step {number}; "
                                   "no update was applied") from None
        except FloatingPointError as error:  # e.g. a method producing non-finite weights
            raise TrainingDiverged(f"{error} at step {number}; no update was applied") from None
        self._update()
        if self.method.needs_post_step_losses:
            with torch.no_grad():
                after = _as_forward(forward()).losses
            try:
                self.method.post_step({task: loss.detach() for task, loss in after.items()})
            except NonFiniteLossError as error:
                raise TrainingDiverged(f"the loss of task {error.task!r} after the update of step {number} is "
                                       f"{error.value} (the method's post_step); the update was applied") from None
        self.steps_done = number
        return result

    def _update(self) -> None:
        options = self.options
        if options.gradient_hook is not None:
            options.gradient_hook()
        if options.max_norm > 0:
            torch.nn.utils.clip_grad_norm_(options.clip, options.max_norm)
        self.optimizer.step()
        if options.scheduler is not None and options.schedule_per == "step":
            options.scheduler.step()

    def epoch_end(self) -> None:
        """Close a training epoch: the method's ``epoch_end``, then a per-epoch scheduler step."""
        self.method.epoch_end()
        if self.options.scheduler is not None and self.options.schedule_per == "epoch":
            self.options.scheduler.step()
