"""Compose the single-task baseline of a table from per-task single-task (STL) runs."""

from __future__ import annotations

from collections.abc import Sequence

from taskbalance.conventions import TASK_NAMES
from taskbalance.results.errors import ResultsError
from taskbalance.results.schema import RunResult

#: Row label of the composed baseline (the paper's "Single-task").
BASELINE_NAME = "Single-task"


def _canonical(tasks: Sequence[str]) -> list[str]:
    known = [t for t in TASK_NAMES if t in tasks]
    return known + [t for t in tasks if t not in TASK_NAMES]


def compose_baseline(runs: Sequence[RunResult], name: str = BASELINE_NAME) -> RunResult:
    """Merge STL runs (typically one per task) into one ``kind="stl"`` result covering all their tasks.

    Each task must come from exactly one run; ``meta["composed_from"]`` records which run gave which task.
    A single STL run that already covers every task is returned renamed.

    Raises:
        ResultsError: no run, a run that is not single-task, or a task reported by two runs.
    """
    if not runs:
        raise ResultsError("the single-task baseline needs at least one STL run")
    source: dict[str, RunResult] = {}
    for run in runs:
        if run.kind != "stl":
            raise ResultsError(f"run {run.name!r} is a multi-task run (kind 'mtl'); the baseline takes STL runs only")
        for task in run.tasks:
            if task in source:
                raise ResultsError(
                    f"task {task!r} is reported by two single-task runs ({source[task].name!r} and {run.name!r}); "
                    "pass one run per task"
                )
            source[task] = run
    tasks = _canonical(list(source))
    selections = sorted({run.selection for run in runs})
    return RunResult(
        name=name,
        method="stl",
        kind="stl",
        tasks=tasks,
        metrics={t: dict(source[t].metrics[t]) for t in tasks},
        primary={t: source[t].primary[t] for t in tasks},
        higher_is_better={t: source[t].higher_is_better[t] for t in tasks},
        mean_weights={t: source[t].mean_weights[t] for t in tasks if t in source[t].mean_weights},
        selection=selections[0] if len(selections) == 1 else "; ".join(selections),
        meta={"composed_from": {t: source[t].name for t in tasks}},
    )
