"""The checkpoint hook: the resumable ``last`` checkpoint, the restore of a resumed run, and the stop after a signal."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from taskbalance.training import checkpoint as ckpt
from taskbalance.training.distributed import barrier, gather_objects, process_seed
from taskbalance.training.hooks.base import Hook
from taskbalance.training.preemption import Preempted
from taskbalance.training.state import LoopState, seed_everything


class Checkpointing(Hook):
    """Writes the ``last`` checkpoint (model weights; optimizer, schedule, balancer, loop position and every RNG
    state, plus each hook's :meth:`~Hook.state_dict`) after every evaluation, every ``every`` steps and when a stop
    signal arrived, then stops such a run with :class:`~taskbalance.training.preemption.Preempted` once the
    checkpoint is verified. It comes after the hooks that evaluate, so that a checkpoint holds their step;
    :meth:`restore` continues a run from its last checkpoint.

    Args:
        folder: the checkpoints folder. ``every``: steps between checkpoints besides the evaluations (None: none).
        seed: the run's seed (a run resumed on another number of processes reseeds them from it).
        warn: how a damaged checkpoint that was skipped is reported.
    """

    def __init__(self, folder: Path, every: int | None = None, seed: int = 0,
                 warn: Callable[[str], None] | None = None) -> None:
        self.folder, self.every, self.seed = folder, every, seed
        self.warn = warn or (lambda message: None)
        self._tic = 0.0

    def before_run(self) -> None:
        self._tic = time.perf_counter()

    def after_step(self) -> None:
        loop = self.loop
        assert loop.outcome is not None
        stopping = loop.stop_requested()  # every process stops alike
        if loop.outcome.evaluate or stopping or (self.every is not None and loop.state.step % self.every == 0):
            self.save()
        if stopping:
            raise self._preempted(loop.stop_signal)

    def failure_note(self) -> str:
        return ckpt.intact_note(self.folder)

    def save(self) -> None:
        """Checkpoint the training state now (on every process: each process's RNG streams are gathered)."""
        loop = self.loop
        loop.call("before_checkpoint")
        now = time.perf_counter()
        loop.state.train_seconds += now - self._tic
        self._tic = now
        rng = gather_objects(ckpt.rng_state(), loop.dist)  # every process's streams (dropout differs per process)
        if not loop.dist.is_main:
            return
        state: dict[str, Any] = {"optimizer": loop.optimizer.state_dict()}
        if loop.scheduler is not None:
            state["scheduler"] = loop.scheduler.state_dict()
        state.update({"balancer": loop.balancer.state_dict(), "loop": asdict(loop.state), "rng": rng[0]})
        if loop.dist.enabled:
            state["rng_processes"] = rng
        for hook in loop.hooks:
            state.update(hook.state_dict())
        ckpt.save_checkpoint(self.folder, "last", loop.state.step, loop.model, state)

    def restore(self) -> bool:
        """Load the last checkpoint in the folder into the loop, its hooks and the RNGs (once the loop is built, before
        it runs); False when there is none."""
        loop = self.loop
        found = ckpt.find_checkpoint(self.folder, "last", on_damage=self.warn)
        if found is None:
            return False
        ckpt.load_weights(loop.model, found, loop.device)
        saved = ckpt.load_state(found)
        loop.optimizer.load_state_dict(saved["optimizer"])
        if loop.scheduler is not None:
            loop.scheduler.load_state_dict(saved["scheduler"])
        loop.balancer.load_state_dict(saved["balancer"])
        for hook in loop.hooks:
            hook.load_state_dict(saved)
        loop.state = LoopState(**saved["loop"])
        self._restore_rng(saved)
        loop.console.print(f"resuming {self.folder.parent} from step {loop.state.step}/{loop.schedule.total_steps}")
        return True

    def _restore_rng(self, saved: dict[str, Any]) -> None:
        """This process's RNG streams as saved; a run resumed on another number of processes reseeds them."""
        dist = self.loop.dist
        per_process = saved.get("rng_processes")
        if dist.enabled and per_process is not None and len(per_process) == dist.world_size:
            ckpt.set_rng_state(per_process[dist.rank])
            return
        ckpt.set_rng_state(saved["rng"])
        if dist.enabled:
            seed_everything(process_seed(self.seed + self.loop.state.step, dist))

    def _preempted(self, signum: int | None) -> Preempted:
        """The stop after a signal, once the checkpoint of this step is written (and verified, on rank 0)."""
        loop = self.loop
        path = ckpt.checkpoint_folder(self.folder, "last", loop.state.step)
        problem = ckpt.verify_checkpoint(path) if loop.dist.is_main else None
        if problem is not None:
            raise ckpt.CheckpointError(f"stopping after a signal: {problem}")
        barrier(loop.dist)
        return Preempted(signum, loop.state.step, path)
