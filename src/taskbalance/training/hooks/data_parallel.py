"""The data-parallel hook: wires :class:`~taskbalance.training.ddp.DataParallel` into the loop (the forward through
DDP, globally normalised losses, the reducer and the all-reduce after the backward) and aligns the BatchNorm
buffers of every process before a checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskbalance.training.ddp import DataParallel
from taskbalance.training.hooks.base import Hook

if TYPE_CHECKING:
    from taskbalance.training.loop import Loop


class DataParallelSetup(Hook):
    """Runs the loop's steps data-parallel through ``parallel`` (see :mod:`taskbalance.training.ddp`)."""

    def __init__(self, parallel: DataParallel) -> None:
        self.parallel = parallel

    def attach(self, loop: Loop) -> None:
        super().attach(loop)
        parallel = self.parallel
        loop.model_forward = parallel.forward_train
        loop.losses_context = parallel.losses_context
        loop.reducer = parallel.reducer
        loop.set_step_options(gradient_hook=parallel.gradient_hook)

    def before_checkpoint(self) -> None:
        self.parallel.sync_buffers()  # the checkpoint is the state of every process: rank 0's BatchNorm statistics
