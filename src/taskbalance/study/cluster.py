"""A study run as a submitit job (SLURM, or submitit's local executor): requeued on preemption and at the time limit
through submitit's checkpointing protocol, and spread over one process per GPU when the run has several.

* **Requeue.** :class:`StudyJob` is a ``submitit.helpers.Checkpointable``. Besides the run's ``stop_signals``, the
  trainer stops on submitit's preemption signal (``SIGUSR2`` unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise):
  it finishes its step and writes a verified checkpoint. The job then hands the signal back to submitit's own
  handler, which asks :meth:`StudyJob.checkpoint` for the job to requeue (the same job on the same run, which
  resumes from that checkpoint) and requeues it.
* **Several GPUs.** With ``gpus_per_job = N > 1`` the job has N tasks (``tasks_per_node = N``). Each task exports
  torch's distributed environment from submitit's ``JobEnvironment`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``) and trains as one process of the run, exactly as under ``torchrun``: on
  ``cuda:LOCAL_RANK``, every process seeing all of the node's GPUs.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

import submitit
from submitit.helpers import Checkpointable, TorchDistributedEnvironment

from taskbalance.study.run_task import RunOutcome, RunTask, execute_run
from taskbalance.training.preemption import Preempted, signal_number

PREEMPT_SIGNAL_VARIABLE = "SUBMITIT_PREEMPT_SIGNAL"


def preemption_signal() -> signal.Signals:
    """The signal submitit's jobs receive before a preemption or their time limit (its ``USR2`` default)."""
    return signal_number(os.environ.get(PREEMPT_SIGNAL_VARIABLE, "USR2"))


def export_torch_environment() -> int:
    """In a submitit job of several tasks, export torch's distributed variables for this task; returns its rank
    (0 in a job of one task, where nothing is exported)."""
    if submitit.JobEnvironment().num_tasks <= 1:
        return 0
    # every task sees every GPU of its node and takes cuda:LOCAL_RANK (taskbalance.training.distributed)
    return TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True).rank


def task_log(log: str, rank: int) -> str:
    """Where a task of a run's job writes: the run's log for rank 0, ``<log>.rank<r>`` for the others."""
    return log if rank == 0 else f"{log}.rank{rank}"


class StudyJob(Checkpointable):
    """The callable a study submits for each run (``executor.submit(StudyJob(), task)``)."""

    def __call__(self, task: RunTask) -> RunOutcome:
        rank = export_torch_environment()
        job_task = task if rank == 0 else RunTask(**{**task.__dict__, "log": task_log(task.log, rank)})
        requeue = preemption_signal()
        try:
            return execute_run(job_task, requeue_signals=(requeue,))
        except Preempted:
            signal.raise_signal(requeue)  # submitit's handler, back in place: self.checkpoint(task), requeue, exit
            raise  # on the other tasks submitit's handler returns: they end, and the requeued job starts them anew


@dataclass(frozen=True)
class FirstTask:
    """A submitted job as the study's handle: done when every task is, its outcome that of task 0 (which trains as rank
    0, the process that writes the run). submitit's own ``result()`` refuses jobs of several tasks."""

    job: Any

    def done(self) -> bool:
        return bool(self.job.done())

    def result(self) -> RunOutcome:
        outcome: RunOutcome = self.job.results()[0]
        return outcome
