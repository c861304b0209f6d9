"""The progress hook: the console's progress bar (loss, images per second) and the note on the last shared layer."""

from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from taskbalance.training.hooks.base import Hook


class ProgressBar(Hook):
    """A rich progress bar of run ``name``'s steps on the main process (hidden when ``show`` is False); says which
    module is the last shared layer when ``method`` takes its task gradients there."""

    def __init__(self, name: str, method: str, show: bool = True) -> None:
        self.name, self.method, self.show = name, method, show
        self._progress: Progress | None = None
        self._bar: TaskID | None = None
        self._tic, self._images = 0.0, 0

    def before_run(self) -> None:
        loop = self.loop
        self._announce_last_layer()
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                  console=loop.console, disable=not (self.show and loop.dist.is_main), transient=False)
        self._progress.start()
        self._bar = self._progress.add_task(self.name, total=loop.schedule.total_steps, completed=loop.state.step,
                                            info="")
        self._tic, self._images = time.perf_counter(), 0

    def after_step(self) -> None:
        outcome = self.loop.outcome
        assert outcome is not None and self._progress is not None and self._bar is not None
        self._images += outcome.images
        speed = self._images / max(time.perf_counter() - self._tic, 1e-9)
        loss = sum(outcome.result.losses.values())
        self._progress.update(self._bar, completed=self.loop.state.step, info=f"loss {loss:.4g} · {speed:.1f} img/s")

    def before_checkpoint(self) -> None:
        self._tic, self._images = time.perf_counter(), 0  # the speed since the last checkpoint

    def after_train(self) -> None:
        self._close()

    def after_run(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _announce_last_layer(self) -> None:
        loop = self.loop
        balancer = loop.balancer
        if balancer.requires == "losses" or balancer.source != "last_layer" or not loop.dist.is_main:
            return
        layer = loop.model.last_shared_layer()
        path = next((name for name, module in loop.model.named_modules() if module is layer), None)
        described = balancer.last_layer_name if path is None else f"{path}: {balancer.last_layer_name}"
        count = sum(p.numel() for p in balancer.last_layer_params)
        loop.console.print(f"{self.method} takes its task gradients on the last shared layer ({described}, "
                           f"{count} parameters)")
