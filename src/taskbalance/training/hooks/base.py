"""The hook contract of the loop core (:class:`~taskbalance.training.loop.Loop`).

A hook is an object with any of these methods; the base class makes every one a no-op, so a hook overrides only
what it needs. The loop calls them on every process, in the order of its hook list:

* ``before_run()``: once, before the first step. A resumed run's state is restored here (by the checkpoint hook,
  which comes first), so later hooks see the step the run continues from.
* ``before_step()``: before each step.
* ``on_forward(images, output, forward) -> Forward``: inside the step's forward, once the task losses are computed;
  returns the :class:`~taskbalance.balancers.driver.Forward` to balance (distillation adds its losses here). Called
  again under ``no_grad`` when the method re-evaluates the losses after the update (FAMO).
* ``after_step()``: after each step, once it is counted: ``loop.state.step`` is the step just taken and
  ``loop.outcome`` says what happened and what the schedule asks for now (evaluate, epoch end, last step).
* ``before_checkpoint()``: right before a checkpoint of the training state is written (on every process).
* ``after_train()``: once the last step is taken (the final evaluation).
* ``after_run()``: always, last, also after a failure or a stop: release what ``before_run`` opened.

A hook that holds training state adds it to the checkpoint with ``state_dict()`` (top-level entries of the saved
state) and takes it back with ``load_state_dict(saved)``; ``modules()`` are the modules it trains along with the
model (their parameters join the optimizer). ``failure_note()`` ends the one-line message of a diverged run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from taskbalance.balancers.driver import Forward

if TYPE_CHECKING:
    from taskbalance.training.loop import Loop


class Hook:
    """Base of every hook: each call is a no-op. ``self.loop`` is the loop it is registered with."""

    loop: Loop

    def attach(self, loop: Loop) -> None:
        """Called once when the loop is built with this hook."""
        self.loop = loop

    def before_run(self) -> None:
        """Once, before the first step (after the state of a resumed run is restored)."""

    def before_step(self) -> None:
        """Before each step."""

    def on_forward(self, images: Tensor, output: Any, forward: Forward) -> Forward:
        """The step's forward, losses computed: return it, changed or not."""
        return forward

    def after_step(self) -> None:
        """After each step (``loop.state.step`` counts it; ``loop.outcome`` describes it)."""

    def before_checkpoint(self) -> None:
        """Right before the training state is checkpointed."""

    def after_train(self) -> None:
        """Once the last step is taken."""

    def after_run(self) -> None:
        """Always, last (also after a failure or a stop)."""

    def modules(self) -> Mapping[str, nn.Module]:
        """Modules trained along with the model (name -> module)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Entries this hook adds to a checkpoint's training state."""
        return {}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Take this hook's entries back from a checkpoint's training state."""

    def failure_note(self) -> str | None:
        """What to add to the message of a run that stopped on a non-finite loss (None: nothing)."""
        return None
