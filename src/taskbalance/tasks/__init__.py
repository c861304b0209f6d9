"""Dense-prediction tasks: one declarative :class:`TaskSpec` per task (loss, meter, primary metric, ignore value).

``build_task(name, **options)`` gives the spec of a task of the paper; ``delta_m`` is the paper's Eq. (5).

May import: ``conventions``, ``registration`` and ``results`` (the metric conventions); never models or training.
"""

from taskbalance.results.delta import delta_m
from taskbalance.tasks.registry import EDGE_MAX_DIST, available_tasks, build_task, task_options
from taskbalance.tasks.spec import EmptyMeterError, Meter, TaskError, TaskSpec

__all__ = [
    "EDGE_MAX_DIST",
    "EmptyMeterError",
    "Meter",
    "TaskError",
    "TaskSpec",
    "available_tasks",
    "build_task",
    "delta_m",
    "task_options",
]
