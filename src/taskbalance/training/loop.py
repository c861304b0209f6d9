"""The loop core: steps through the :class:`~taskbalance.balancers.driver.StepDriver` on an epoch/iteration schedule
and calls its hooks (:mod:`taskbalance.training.hooks`) at fixed points; everything else a run does is a hook.

Per step: ``before_step``; the step (forward: ``model.forward_train`` through ``loop.model_forward``, the task
losses plus deep supervision inside ``loop.losses_context``, then every hook's ``on_forward``; the balancer's
``backward`` with ``diagnose=`` every ``diagnose_every`` steps, the gradient hook, clipping, optimizer and schedule
steps, the method's ``post_step``); the step is counted (at an epoch's end the driver's ``epoch_end``) and the mean
weights accumulated; then ``after_step``, with ``loop.outcome`` saying whether the schedule evaluates now
(every ``eval_every`` steps, or at every epoch end without it, and after the last step). See
:mod:`taskbalance.training.hooks.base` for every hook point.

Batches come from an :class:`~taskbalance.training.epochs.EpochLoader`, so a run resumed from its position (epoch,
batches done in it, restored by the checkpoint hook) sees the same batches in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from torch.optim import Optimizer

from taskbalance.balancers import Balancer, StepResult
from taskbalance.balancers.driver import Forward, StepDriver, StepOptions, TrainingDiverged
from taskbalance.balancers.types import GradientReducer, GradientSource
from taskbalance.training.batches import to_device
from taskbalance.training.distributed import DistInfo, any_process, barrier
from taskbalance.training.epochs import EpochLoader
from taskbalance.training.evaluate import autocast_context, task_losses
from taskbalance.training.hooks.base import Hook
from taskbalance.training.preemption import StopRequest
from taskbalance.training.state import LoopState

if TYPE_CHECKING:
    from taskbalance.models.base import MultiTaskModel
    from taskbalance.tasks import TaskSpec

__all__ = ["Loop", "LoopState", "Schedule", "StepOutcome"]


@dataclass(frozen=True)
class Schedule:
    """How long the loop trains and when it evaluates and diagnoses.

    ``eval_every``: evaluate every that many steps; None or 0: at every epoch end (and always after the last step).
    ``diagnose_every``: measure the per-task gradients on ``diagnose_source`` every that many steps (0: never).
    """

    total_steps: int
    eval_every: int | None = None
    diagnose_every: int = 0
    diagnose_source: GradientSource = "last_layer"


@dataclass
class StepOutcome:
    """The step just taken and what the schedule asks for after it (``loop.outcome`` in ``after_step``).

    ``extras``: what a hook measured in the step, for the hooks after it (``feature_distance``: distillation).
    """

    result: StepResult
    images: int
    diagnose: bool
    epoch_done: bool
    finished: bool
    evaluate: bool
    extras: dict[str, dict[str, float]] = field(default_factory=dict)


class Loop:
    """The loop core (see the module docstring): build it with the run's parts and its hooks, then call :meth:`run`.

    Args:
        model, balancer, optimizer: what trains; ``step_options`` how the update is applied (scheduler, clipping).
        specs: the task specs (losses and meters).
        epochs: the training batches; ``schedule``: how long and when to evaluate and diagnose.
        device: where batches go; ``amp``: bfloat16 autocast on GPU.
        hooks: called in this order at every hook point.
        dist: this process's place in a data-parallel run (the stop signal is agreed across processes).
        stop_signals: signals that ask the run to stop after the current step (the checkpoint hook acts on them).
        console: where hooks print.
    """

    def __init__(self, *, model: MultiTaskModel, balancer: Balancer, optimizer: Optimizer, step_options: StepOptions,
                 specs: Mapping[str, TaskSpec], epochs: EpochLoader, schedule: Schedule, device: torch.device,
                 hooks: Sequence[Hook] = (), amp: bool = False, dist: DistInfo | None = None,
                 stop_signals: Sequence[int] = (), console: Console | None = None) -> None:
        self.model, self.balancer, self.optimizer, self.step_options = model, balancer, optimizer, step_options
        self.specs, self.epochs, self.schedule, self.device, self.amp = specs, epochs, schedule, device, amp
        self.dist = dist or DistInfo()
        self.stop_signals = list(stop_signals)
        self.console = console or Console()
        self.state = LoopState()
        self.outcome: StepOutcome | None = None
        #: the training forward of the model, ``(images, diagnose) -> output`` (the data-parallel hook replaces it)
        self.model_forward: Callable[[torch.Tensor, bool], Any] = lambda images, diagnose: model.forward_train(images)
        #: the context the task losses are computed in (the data-parallel hook normalises them globally)
        self.losses_context: Callable[[], AbstractContextManager[Any]] = nullcontext
        self.reducer: GradientReducer | None = None
        self.hooks = list(hooks)
        self._stop: StopRequest | None = None
        for hook in self.hooks:
            hook.attach(self)

    @property
    def scheduler(self) -> Any:
        """The learning-rate schedule (None without one)."""
        return self.step_options.scheduler

    def set_step_options(self, **changes: Any) -> None:
        """Change how the update is applied (before :meth:`run`; the data-parallel hook adds its gradient hook)."""
        self.step_options = replace(self.step_options, **changes)

    def call(self, point: str) -> None:
        """Call hook point ``point`` (``before_checkpoint``, ...) of every hook, in order."""
        for hook in self.hooks:
            getattr(hook, point)()

    def stop_requested(self) -> bool:
        """Whether a stop signal was received, by any process (a collective call: every process asks alike)."""
        received = self._stop is not None and self._stop.received is not None
        return any_process(received, self.dist)

    @property
    def stop_signal(self) -> int | None:
        """The signal that asked the run to stop (None: none here, or another process's)."""
        return self._stop.received if self._stop is not None else None

    def run(self) -> None:
        """Train from the current state to ``schedule.total_steps``, then ``after_train``; ``after_run`` always."""
        try:
            self.call("before_run")
            self.driver = StepDriver.for_balancer(self.balancer, self.optimizer, self.step_options,
                                                  steps_done=self.state.step, reducer=self.reducer)
            with StopRequest(self.stop_signals) as self._stop:
                self._train()
            self._stop = None
            barrier(self.dist)
            self.call("after_train")
            barrier(self.dist)
        finally:
            self.call("after_run")

    def _train(self) -> None:
        state, schedule = self.state, self.schedule
        while state.step < schedule.total_steps:
            for batch in self.epochs.batches(state.epoch, state.batch_in_epoch):
                every = schedule.diagnose_every
                diagnose = every > 0 and (state.step + 1) % every == 0
                self.call("before_step")
                result = self._step(to_device(batch, self.device), diagnose)
                epoch_done = self._advance()
                for task, weight in result.weights.items():
                    state.weight_sums[task] = state.weight_sums.get(task, 0.0) + weight
                state.weight_count += 1
                finished = state.step >= schedule.total_steps
                evaluate = finished or (state.step % schedule.eval_every == 0 if schedule.eval_every else epoch_done)
                self.outcome = StepOutcome(result, int(batch["image"].shape[0]), diagnose, epoch_done, finished,
                                           evaluate)
                self.call("after_step")
                if finished:
                    break

    def _forward(self, batch: Mapping[str, Any], diagnose: bool) -> Forward:
        images = batch["image"]
        with autocast_context(self.device, self.amp):
            output = self.model_forward(images, diagnose)
        with self.losses_context():
            losses = task_losses(self.specs, output, batch)  # masked means over the global batch
        forward = Forward(losses, output.features)
        for hook in self.hooks:
            forward = hook.on_forward(images, output, forward)
        return forward

    def _step(self, batch: Mapping[str, Any], diagnose: bool) -> StepResult:
        source = self.schedule.diagnose_source if diagnose else None
        try:
            return self.driver.step(lambda: self._forward(batch, diagnose), diagnose=source)
        except TrainingDiverged as error:
            notes = [note for hook in self.hooks if (note := hook.failure_note()) is not None]
            raise TrainingDiverged("; ".join([f"training stopped: {error}", *notes])) from None

    def _advance(self) -> bool:
        """Count the step just taken; run ``epoch_end`` at an epoch's end. Returns whether the epoch ended."""
        state = self.state
        state.step += 1
        state.batch_in_epoch += 1
        if state.batch_in_epoch < len(self.epochs):
            return False
        self.driver.epoch_end()
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        return True
