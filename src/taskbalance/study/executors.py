"""Where the runs of a study execute: in this process, in N local processes, or as jobs through submitit.

Every backend runs :func:`execute_run` on a picklable :class:`RunTask` and hands back handles with ``done()`` and
``result()`` (a :class:`concurrent.futures.Future` or a submitit job). :func:`build_backend` builds one by name:

* ``local`` (default): ``--jobs 1`` trains in this process (with the trainer's progress bars); ``--jobs N`` in N
  spawned processes. A run's torch thread count is its config's ``threads`` (fixed by the study), never derived
  from ``--jobs``: on CPU the count changes the numbers, and ``--jobs`` must change only the wall time.
* ``slurm``: one SLURM job per run through submitit (``pip install taskbalance[cluster]``), submitted as job
  arrays with partition, GPUs per job, time limit and array parallelism.
* ``submitit-local``: the same submitit code path with submitit's local executor (one machine, no SLURM): what
  the tests exercise.

The study waits for its jobs. Interrupted, the submitted jobs go on; the same command run later finds the finished
runs in their directories, and a run whose job still trains is reported as locked by it (the run directory's lock)
rather than trained twice.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from taskbalance.study.run_task import RunOutcome, RunTask, execute_run
from taskbalance.training.workers import guard_worker

EXECUTORS = ("local", "slurm", "submitit-local")


class Handle(Protocol):
    """A submitted run: a concurrent.futures Future or a submitit Job."""

    def done(self) -> bool: ...

    def result(self) -> RunOutcome: ...


class Backend(Protocol):
    """Executes run tasks; ``capacity`` runs at once at most (the scheduler submits no more)."""

    name: str
    capacity: int
    poll_seconds: float

    def submit(self, tasks: Sequence[RunTask]) -> list[Handle]: ...

    def close(self) -> None: ...


class InlineBackend:
    """One run at a time in this process, showing the trainer's own output."""

    name = "local"
    capacity = 1
    poll_seconds = 0.0

    def __init__(self, console: Console, show_progress: bool) -> None:
        self.console, self.show_progress = console, show_progress

    def submit(self, tasks: Sequence[RunTask]) -> list[Handle]:
        handles: list[Handle] = []
        for task in tasks:
            future: Future[RunOutcome] = Future()
            self.console.print(f"[bold]{task.name}[/bold]")
            future.set_result(execute_run(task, self.console, self.show_progress))
            handles.append(future)
        return handles

    def close(self) -> None:
        return None


class ProcessBackend:
    """``jobs`` spawned worker processes (spawned, not forked: a forked OpenMP runtime can hang)."""

    name = "local"
    poll_seconds = 0.2

    def __init__(self, jobs: int) -> None:
        self.capacity = jobs
        # workers stop with the study, even a SIGKILLed one (taskbalance.training.workers)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=guard_worker, initargs=(os.getpid(),))

    def submit(self, tasks: Sequence[RunTask]) -> list[Handle]:
        return [self.pool.submit(execute_run, task) for task in tasks]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class ClusterOptions:
    """submitit / SLURM settings of a study's jobs."""

    folder: Path
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    time_min: int = 240
    array_parallelism: int = 32
    mem_gb: int | None = None

    def parameters(self) -> dict[str, Any]:
        """submitit ``update_parameters`` keywords (generic names, ``slurm_`` for SLURM-only ones)."""
        tasks = max(1, self.gpus_per_job)  # one process per GPU (taskbalance.study.cluster)
        params: dict[str, Any] = {"name": "taskbalance", "timeout_min": self.time_min, "tasks_per_node": tasks,
                                  "cpus_per_task": max(1, self.cpus_per_job // tasks),
                                  "gpus_per_node": self.gpus_per_job,
                                  "slurm_array_parallelism": self.array_parallelism}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        return params


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise RuntimeError("the slurm executor needs submitit: pip install taskbalance[cluster]") from None
    return submitit


class SubmititBackend:
    """Runs as submitit jobs (``cluster``: ``slurm`` or ``local``), submitted together as one job array."""

    poll_seconds = 2.0

    def __init__(self, cluster: str, options: ClusterOptions, capacity: int) -> None:
        submitit = _submitit()
        self.name = "slurm" if cluster == "slurm" else "submitit-local"
        self.capacity = capacity
        try:
            self.executor = submitit.AutoExecutor(folder=str(options.folder / "%j"), cluster=cluster)
        except RuntimeError as error:  # e.g. no srun on this machine
            raise RuntimeError(f"cannot use the {cluster} executor here: {error}") from None
        self.executor.update_parameters(**options.parameters())
        if cluster == "local":
            self.poll_seconds = 0.5

    def submit(self, tasks: Sequence[RunTask]) -> list[Handle]:
        from taskbalance.study.cluster import FirstTask, StudyJob

        with self.executor.batch():
            jobs = [self.executor.submit(StudyJob(), task) for task in tasks]
        return [FirstTask(job) for job in jobs]

    def close(self) -> None:
        return None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform says, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def thread_budget(jobs: int, cores: int | None = None) -> int:
    """CPUs to reserve per job when ``jobs`` jobs share ``cores`` (default: :func:`usable_cores`)."""
    return max(1, (cores or usable_cores()) // jobs)


def build_backend(name: str, jobs: int = 1, console: Console | None = None, show_progress: bool = True,
                  cluster: ClusterOptions | None = None) -> Backend:
    """The executor called ``name`` (one of :data:`EXECUTORS`); ``jobs`` runs at once locally."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    if name == "local":
        if jobs == 1:
            return InlineBackend(console or Console(), show_progress)
        return ProcessBackend(jobs)
    if cluster is None:
        raise ValueError(f"the {name} executor needs cluster options (a log folder)")
    if name == "slurm":
        return SubmititBackend("slurm", cluster, cluster.array_parallelism)
    return SubmititBackend("local", ClusterOptions(**{**cluster.__dict__, "cpus_per_job": thread_budget(jobs)}), jobs)
