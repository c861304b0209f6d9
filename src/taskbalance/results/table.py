"""The paper-style results table over seeds: one row per arm, each task's primary metric and Δm against the
single-task baseline as mean ± std over seeds, Δm's 95% t-interval, and a paired comparison with a reference arm.

Δm convention (stated in every table's notes): the paper's Eq. (5), higher is better, computed **per seed against
the same seed's single-task runs**; a seed that has no single-task runs of its own is compared with the
single-task mean over seeds (and the notes say how many were). The paired comparison of an arm with the
reference arm (uniform) is the per-seed difference of their Δm over the seeds both have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from taskbalance.conventions import TASK_LABELS, TASK_NAMES
from taskbalance.results.arms import Arm, Seed, single_arm
from taskbalance.results.delta import task_improvements
from taskbalance.results.errors import ResultsError
from taskbalance.results.schema import RunResult
from taskbalance.results.stats import INTERVAL_LABEL, Summary, paired_difference, summarize

#: Display names of primary metrics, as the paper prints them.
METRIC_LABELS: dict[str, str] = {"rmse": "RMSE", "mean": "mErr", "approx_F": "approxF"}
#: The Δm convention of every table (the paper's Eq. 5).
DELTA_CONVENTION = "Δm% is the paper's Eq. 5, the mean over tasks of the signed relative change M_i (higher is better)"
#: The marker of a paired difference whose interval excludes 0.
SIGNIFICANT = "*"


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
    """One arm over its seeds, in column order: primary-metric values, per-task ``M_i`` (percent) and Δm (percent)
    as summaries over seeds; ``seed_delta_m`` holds Δm per seed; ``versus_reference`` the paired difference of Δm
    with the reference arm (None for the reference itself, the baseline, or without a reference)."""

    name: str
    values: tuple[Summary, ...]
    improvements: tuple[Summary, ...]
    delta_m: Summary
    seed_delta_m: Mapping[Seed, float]
    versus_reference: Summary | None = None
    is_baseline: bool = False

    @property
    def n(self) -> int:
        """Number of seeds."""
        return self.delta_m.n


@dataclass(frozen=True)
class ResultsTable:
    """Columns (tasks), rows (arms; the baseline, when included, first with Δm = 0), the reference arm of the paired
    comparison (None: no paired column) and the notes every rendering prints under the table."""

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    reference: str | None
    notes: tuple[str, ...]

    def row(self, name: str) -> Row | None:
        """The row called ``name``, or None."""
        return next((r for r in self.rows if r.name == name), None)


def _columns(arms: Sequence[Arm], baseline: RunResult, tasks: Sequence[str] | None) -> tuple[Column, ...]:
    runs = [run for arm in arms for run in arm.runs.values()]
    chosen = list(tasks) if tasks is not None else [t for t in baseline.tasks if all(t in r.tasks for r in runs)]
    if not chosen:
        raise ResultsError(f"the runs share no task with the baseline (baseline tasks: {', '.join(baseline.tasks)})")
    order = {t: i for i, t in enumerate(TASK_NAMES)}
    chosen.sort(key=lambda t: order.get(t, len(order)))
    for task in chosen:
        if task not in baseline.tasks:
            raise ResultsError(f"task {task!r} is missing from the single-task baseline {baseline.name!r}")
    return tuple(Column(t, baseline.primary[t], baseline.higher_is_better[t]) for t in chosen)


def _values(run: RunResult, columns: tuple[Column, ...]) -> dict[str, float]:
    for col in columns:
        if col.task not in run.tasks:
            raise ResultsError(f"run {run.name!r} has no result for task {col.task!r} (its tasks: {', '.join(run.tasks)})")
        if run.primary[col.task] != col.metric or run.higher_is_better[col.task] != col.higher_is_better:
            raise ResultsError(
                f"run {run.name!r} reports {run.primary[col.task]!r} as the primary metric of task {col.task!r}, "
                f"but the baseline uses {col.metric!r}; they cannot be compared"
            )
    return {c.task: run.metrics[c.task][c.metric] for c in columns}


@dataclass(frozen=True)
class _References:
    """Per-seed baseline values and their mean over seeds (for seeds without their own single-task runs)."""

    per_seed: dict[Seed, dict[str, float]]
    mean: dict[str, float]

    def of(self, seed: Seed) -> tuple[dict[str, float], bool]:
        """The baseline of ``seed`` and whether it is the same seed's (True) or the mean over seeds (False)."""
        return (self.per_seed[seed], True) if seed in self.per_seed else (self.mean, False)


def _row(arm: Arm, columns: tuple[Column, ...], refs: _References, counts: list[int], is_baseline: bool = False) -> Row:
    directions = {c.task: c.higher_is_better for c in columns}
    values: list[dict[str, float]] = []
    improvements: list[dict[str, float]] = []
    for seed in arm.seeds:
        value = _values(arm.runs[seed], columns)
        reference, paired = refs.of(seed)
        counts[0 if paired else 1] += 1
        values.append(value)
        improvements.append(task_improvements(value, reference, directions))
    seed_delta = {seed: sum(m.values()) / len(m) for seed, m in zip(arm.seeds, improvements)}
    return Row(
        name=arm.name,
        values=tuple(summarize([v[c.task] for v in values]) for c in columns),
        improvements=tuple(summarize([m[c.task] for m in improvements]) for c in columns),
        delta_m=summarize(list(seed_delta.values())),
        seed_delta_m=seed_delta,
        is_baseline=is_baseline,
    )


def _with_reference(rows: list[Row], reference: str | None) -> tuple[list[Row], str | None]:
    anchor = next((r for r in rows if r.name == reference and not r.is_baseline), None)
    if anchor is None:
        return rows, None
    out = []
    for row in rows:
        if row.is_baseline or row is anchor:
            out.append(row)
            continue
        try:
            versus = paired_difference(row.seed_delta_m, anchor.seed_delta_m)
        except ResultsError:
            versus = None
        out.append(Row(row.name, row.values, row.improvements, row.delta_m, row.seed_delta_m, versus, row.is_baseline))
    return out, reference


def _notes(counts: list[int], reference: str | None, n_max: int) -> tuple[str, ...]:
    paired, fallback = counts
    rule = f"{DELTA_CONVENTION}, computed per seed against the same seed's single-task runs"
    if fallback:
        rule += (f"; {fallback} of {paired + fallback} runs have no single-task runs of their seed and are compared "
                 "with the single-task mean over seeds")
    notes = [rule + ".", f"Cells: mean ± sample std over seeds (n seeds); intervals: {INTERVAL_LABEL}."]
    if reference is not None:
        notes.append(f"vs {reference}: per-seed difference of Δm to the {reference} arm over their common seeds, "
                     f"with its {INTERVAL_LABEL}; {SIGNIFICANT} marks an interval that excludes 0.")
    if n_max < 2:
        notes.append("One seed per arm: no spread and no interval; one seed cannot separate the arms.")
    return tuple(notes)


def results_table(
    runs: Sequence[RunResult | Arm],
    baseline: RunResult | Arm,
    tasks: Sequence[str] | None = None,
    include_baseline: bool = True,
    reference: str | None = "uniform",
) -> ResultsTable:
    """Build the table of ``runs`` (arms, or single runs = arms of one seed) against ``baseline``.

    Args:
        runs: the arms (see :func:`~taskbalance.results.group_runs`); a :class:`RunResult` is an arm of one run.
        baseline: the single-task baseline per seed (:func:`~taskbalance.results.baseline_arm`) or one composed
            baseline (:func:`~taskbalance.results.compose_baseline`).
        tasks: the task columns (default: every baseline task that all runs report), in canonical order, each with
            the baseline's primary metric.
        reference: the row the paired comparison is made against (skipped when no row has this name).

    Raises:
        ResultsError: a run lacks a column's task or uses a different primary metric, or a value is unusable.
    """
    arms = [single_arm(r) if isinstance(r, RunResult) else r for r in runs]
    base = single_arm(baseline) if isinstance(baseline, RunResult) else baseline
    widest = max(base.runs.values(), key=lambda run: len(run.tasks))
    columns = _columns(arms, widest, tasks)
    # a seed whose single-task runs miss a column's task is left out of the baseline (its runs use the mean)
    base = Arm(base.name, {seed: run for seed, run in base.runs.items() if all(c.task in run.tasks for c in columns)})
    per_seed = {seed: _values(run, columns) for seed, run in base.runs.items()}
    mean = {c.task: sum(v[c.task] for v in per_seed.values()) / len(per_seed) for c in columns}
    refs = _References(per_seed, mean)
    counts = [0, 0]
    rows = [_row(arm, columns, refs, counts) for arm in arms]
    if include_baseline:
        rows.insert(0, _row(base, columns, refs, [0, 0], is_baseline=True))
    rows, anchor = _with_reference(rows, reference)
    n_max = max((row.n for row in rows), default=1)
    return ResultsTable(columns, tuple(rows), anchor, _notes(counts, anchor, n_max))
