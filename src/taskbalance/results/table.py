"""The paper-style results table: one row per method, each task's primary metric, and Δm against a baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from taskbalance.conventions import TASK_LABELS, TASK_NAMES
from taskbalance.results.delta import task_improvements
from taskbalance.results.errors import ResultsError
from taskbalance.results.schema import RunResult

#: Display names of primary metrics, as the paper prints them.
METRIC_LABELS: dict[str, str] = {"rmse": "RMSE", "mean": "mErr", "approx_F": "approxF"}


@dataclass(frozen=True)
class Column:
    """One task column: the task, its primary metric and direction, and its header text (without arrow)."""

    task: str
    metric: str
    higher_is_better: bool

    @property
    def header(self) -> str:
        """``"Seg. mIoU"``-style header."""
        return f"{TASK_LABELS.get(self.task, self.task)} {METRIC_LABELS.get(self.metric, self.metric)}"

    @property
    def arrow(self) -> str:
        """``↑`` when higher is better, ``↓`` otherwise."""
        return "↑" if self.higher_is_better else "↓"


@dataclass(frozen=True)
class Row:
    """One method: its primary-metric values, per-task ``M_i`` (percent) and Δm (percent), in column order."""

    name: str
    values: tuple[float, ...]
    improvements: tuple[float, ...]
    delta_m: float
    is_baseline: bool = False


@dataclass(frozen=True)
class ResultsTable:
    """Columns (tasks) and rows (methods); the baseline row, when included, comes first with Δm = 0."""

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]


def _columns(runs: Sequence[RunResult], baseline: RunResult, tasks: Sequence[str] | None) -> tuple[Column, ...]:
    chosen = list(tasks) if tasks is not None else [t for t in baseline.tasks if all(t in r.tasks for r in runs)]
    if not chosen:
        raise ResultsError(f"the runs share no task with the baseline (baseline tasks: {', '.join(baseline.tasks)})")
    order = {t: i for i, t in enumerate(TASK_NAMES)}
    chosen.sort(key=lambda t: order.get(t, len(order)))
    for task in chosen:
        if task not in baseline.tasks:
            raise ResultsError(f"task {task!r} is missing from the single-task baseline {baseline.name!r}")
    return tuple(Column(t, baseline.primary[t], baseline.higher_is_better[t]) for t in chosen)


def _row(run: RunResult, columns: tuple[Column, ...], baseline: RunResult, is_baseline: bool) -> Row:
    for col in columns:
        if col.task not in run.tasks:
            raise ResultsError(f"run {run.name!r} has no result for task {col.task!r} (its tasks: {', '.join(run.tasks)})")
        if run.primary[col.task] != col.metric or run.higher_is_better[col.task] != col.higher_is_better:
            raise ResultsError(
                f"run {run.name!r} reports {run.primary[col.task]!r} as the primary metric of task {col.task!r}, "
                f"but the baseline uses {col.metric!r}; they cannot be compared"
            )
    values = {c.task: run.metrics[c.task][c.metric] for c in columns}
    reference = {c.task: baseline.metrics[c.task][c.metric] for c in columns}
    improvements = task_improvements(values, reference, {c.task: c.higher_is_better for c in columns})
    m = tuple(improvements[c.task] for c in columns)
    return Row(run.name, tuple(values[c.task] for c in columns), m, sum(m) / len(m), is_baseline)


def results_table(
    runs: Sequence[RunResult],
    baseline: RunResult,
    tasks: Sequence[str] | None = None,
    include_baseline: bool = True,
) -> ResultsTable:
    """Build the table of ``runs`` against ``baseline`` (see :func:`~taskbalance.results.compose_baseline`).

    Columns are ``tasks`` (default: every baseline task that all runs report) in canonical order, each with the
    baseline's primary metric; each row holds the values, ``M_i`` and Δm (Eq. (5)) over those columns.

    Raises:
        ResultsError: a run lacks a column's task or uses a different primary metric, or a value is unusable.
    """
    columns = _columns(runs, baseline, tasks)
    rows = [_row(baseline, columns, baseline, True)] if include_baseline else []
    rows += [_row(run, columns, baseline, False) for run in runs]
    return ResultsTable(columns, tuple(rows))
