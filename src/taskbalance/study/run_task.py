"""One run of a study as a picklable task, and the function that executes it in any process.

Shared by the executors (local processes) and the submitit job wrapper (:mod:`taskbalance.study.cluster`), so
neither imports the other.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from taskbalance.training.config import RunConfig


@dataclass(frozen=True)
class RunTask:
    """One run to execute: its name in the study, its directory, its finalized config and its log.

    The config is the validated model itself (pickled to a worker process or a submitit job), so no process
    validates it again; the worker only imports the config's plugins, which register the methods it names."""

    name: str
    root: str
    config: RunConfig
    log: str


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``error`` is a one-line reason when it failed (the traceback is in its log)."""

    name: str
    seconds: float
    error: str | None = None
    stopped: bool = False  # by a stop signal, after a checkpoint: the study starts no further run


def execute_run(task: RunTask, console: Console | None = None, show_progress: bool = False,
                requeue_signals: Sequence[int] = ()) -> RunOutcome:
    """Train (or resume) one run (with its config's torch threads); never raises for a failed run. Its output
    goes to ``console``, or (the default) to ``task.log``, the log of an earlier attempt kept as ``<log>.1``.

    A run stopped by one of its ``stop_signals`` (after checkpointing) ends with an outcome saying so; one stopped by
    one of ``requeue_signals`` (which it then stops on too) raises :class:`~taskbalance.training.preemption.Preempted`
    for the caller to requeue it (:class:`~taskbalance.study.cluster.StudyJob`)."""
    from taskbalance.plugins import import_plugins
    from taskbalance.training.preemption import Preempted
    from taskbalance.training.trainer import train
    from taskbalance.training.workers import rotate_log

    started = time.perf_counter()
    root = Path(task.root)
    Path(task.log).parent.mkdir(parents=True, exist_ok=True)
    rotate_log(Path(task.log))
    with open(task.log, "w") as handle:
        console = console or Console(file=handle, width=120, force_terminal=False)
        try:
            import_plugins(task.config.plugins)  # a spawned worker or a job has not imported them yet
            train(task.config, root, resume=(root / "config.yaml").is_file(), console=console,
                  show_progress=show_progress, also_stop_on=requeue_signals)
        except Preempted as stop:
            handle.write(f"{stop}\n")
            if stop.signum in requeue_signals:
                raise
            return RunOutcome(task.name, time.perf_counter() - started, f"{stop}; the next invocation resumes it",
                              stopped=True)
        except Exception as error:  # reported by name by the scheduler; the next invocation retries the run
            handle.write(traceback.format_exc())
            reason = str(error).splitlines()[0] if str(error) else ""
            return RunOutcome(task.name, time.perf_counter() - started, f"{type(error).__name__}: {reason}")
    return RunOutcome(task.name, time.perf_counter() - started)
