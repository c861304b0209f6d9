"""The paper-style results table over seeds: one row per arm, each task's primary metric and Δm against the
single-task baseline as mean ± std over seeds, Δm's 95% t-interval, and a paired comparison with a reference arm.

Δm convention (stated in every table's notes): the paper's Eq. (5), higher is better, against one of two
single-task references (``baseline_mode``):

* ``"mean"`` (default, the paper's fixed reference): every run against the mean over seeds of the single-task
  runs' metrics, so single-task seed noise does not enter the arms' Δm or their paired differences;
* ``"per-seed"``: each run against the same seed's single-task runs; a seed that has no single-task runs of its
  own is compared with the single-task mean over seeds (and the notes say how many were).

The paired comparison of an arm with the reference arm (uniform) is the per-seed difference of their Δm over the
seeds both have; its ``*`` marks a paired t-test significant at 5% after Holm's correction across all the arms
compared with the reference (the printed intervals are the unadjusted 95% t-intervals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from taskbalance.conventions import TASK_LABELS, TASK_NAMES
from taskbalance.results.arms import Arm, Seed, single_arm
from taskbalance.results.delta import task_improvements
from taskbalance.results.errors import ResultsError
from taskbalance.results.schema import RunResult
from taskbalance.results.stats import INTERVAL_LABEL, Summary, holm, paired_difference, summarize, t_test_p

#: Display names of primary metrics, as the paper prints them.
METRIC_LABELS: dict[str, str] = {"rmse": "RMSE", "mean": "mErr", "approx_F": "approxF"}
#: The Δm convention of every table (the paper's Eq. 5).
DELTA_CONVENTION = "Δm% is the paper's Eq. 5, the mean over tasks of the signed relative change M_i (higher is better)"
#: The marker of a paired difference significant after Holm's correction across the arms.
SIGNIFICANT = "*"
#: The single-task references Δm can be taken against (see the module notes).
BaselineMode = Literal["mean", "per-seed"]
BASELINE_MODES: tuple[str, ...] = get_args(BaselineMode)
#: How each reference is described in the notes.
BASELINE_RULES: dict[str, str] = {
    "mean": "against the mean over seeds of the single-task runs (the paper's fixed reference)",
    "per-seed": "per seed against the same seed's single-task runs",
}


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
    with the reference arm (None for the reference itself, the baseline, or without a reference), ``versus_p`` its
    two-sided paired t-test p-value and ``versus_p_holm`` that p-value Holm-adjusted across the compared arms;
    ``seed_improvements`` holds each seed's per-task ``M_i``."""

    name: str
    values: tuple[Summary, ...]
    improvements: tuple[Summary, ...]
    delta_m: Summary
    seed_delta_m: Mapping[Seed, float]
    versus_reference: Summary | None = None
    is_baseline: bool = False
    versus_p: float | None = None
    versus_p_holm: float | None = None
    seed_improvements: Mapping[Seed, Mapping[str, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of seeds."""
        return self.delta_m.n

    @property
    def versus_significant(self) -> bool:
        """True when the paired difference with the reference is significant at 5% after Holm's correction."""
        return self.versus_p_holm is not None and self.versus_p_holm < 0.05


@dataclass(frozen=True)
class ResultsTable:
    """Columns (tasks), rows (arms; the baseline, when included, first with Δm = 0), the reference arm of the paired
    comparison (None: no paired column) and the notes every rendering prints under the table."""

    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    reference: str | None
    notes: tuple[str, ...]
    baseline_mode: BaselineMode = "mean"

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
            raise ResultsError(
                f"run {run.name!r} has no result for task {col.task!r} (its tasks: {', '.join(run.tasks)})"
            )
        if run.primary[col.task] != col.metric or run.higher_is_better[col.task] != col.higher_is_better:
            raise ResultsError(
                f"run {run.name!r} reports {run.primary[col.task]!r} as the primary metric of task {col.task!r}, "
                f"but the baseline uses {col.metric!r}; they cannot be compared"
            )
    return {c.task: run.metrics[c.task][c.metric] for c in columns}


@dataclass(frozen=True)
class _References:
    """Per-seed baseline values and their mean over seeds (the reference of every run in ``"mean"`` mode, and of
    seeds without their own single-task runs in ``"per-seed"`` mode)."""

    per_seed: dict[Seed, dict[str, float]]
    mean: dict[str, float]
    mode: BaselineMode

    def of(self, seed: Seed) -> tuple[dict[str, float], bool]:
        """The baseline of ``seed`` and whether it is the one the mode asks for (False: the per-seed mode's
        fallback to the mean over seeds)."""
        if self.mode == "mean":
            return self.mean, True
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
        seed_improvements=dict(zip(arm.seeds, improvements)),
    )


def _with_reference(rows: list[Row], reference: str | None) -> tuple[list[Row], str | None]:
    anchor = next((r for r in rows if r.name == reference and not r.is_baseline), None)
    if anchor is None:
        return rows, None
    versus: dict[int, Summary | None] = {}
    for index, row in enumerate(rows):
        if row.is_baseline or row is anchor:
            continue
        try:
            versus[index] = paired_difference(row.seed_delta_m, anchor.seed_delta_m)
        except ResultsError:
            versus[index] = None
    p_values = {i: None if v is None else t_test_p(v) for i, v in versus.items()}
    adjusted = holm(p_values)
    out = [
        row
        if i not in versus
        else replace(row, versus_reference=versus[i], versus_p=p_values[i], versus_p_holm=adjusted[i])
        for i, row in enumerate(rows)
    ]
    return out, reference


def _notes(counts: list[int], reference: str | None, n_max: int, mode: BaselineMode, compared: int) -> tuple[str, ...]:
    paired, fallback = counts
    rule = f"{DELTA_CONVENTION}, computed {BASELINE_RULES[mode]}"
    if fallback:
        rule += (f"; {fallback} of {paired + fallback} runs have no single-task runs of their seed and are compared "
                 "with the single-task mean over seeds")
    notes = [rule + ".", f"Cells: mean ± sample std over seeds (n seeds); intervals: {INTERVAL_LABEL}."]
    if reference is not None:
        notes.append(f"vs {reference}: per-seed difference of Δm to the {reference} arm over their common seeds, "
                     f"with its {INTERVAL_LABEL} (unadjusted); {SIGNIFICANT} marks a paired t-test significant at 5% "
                     f"after Holm's correction across the {compared} arm{'s' if compared != 1 else ''} compared with "
                     f"{reference}.")
    if n_max < 2:
        notes.append("One seed per arm: no spread and no interval; one seed cannot separate the arms.")
    return tuple(notes)


def results_table(
    runs: Sequence[RunResult | Arm],
    baseline: RunResult | Arm,
    tasks: Sequence[str] | None = None,
    include_baseline: bool = True,
    reference: str | None = "uniform",
    baseline_mode: BaselineMode = "mean",
) -> ResultsTable:
    """Build the table of ``runs`` (arms, or single runs = arms of one seed) against ``baseline``.

    Args:
        runs: the arms (see :func:`~taskbalance.results.group_runs`); a :class:`RunResult` is an arm of one run.
        baseline: the single-task baseline per seed (:func:`~taskbalance.results.baseline_arm`) or one composed
            baseline (:func:`~taskbalance.results.compose_baseline`).
        tasks: the task columns (default: every baseline task that all runs report), in canonical order, each with
            the baseline's primary metric.
        reference: the row the paired comparison is made against (skipped when no row has this name).
        baseline_mode: ``"mean"`` (every run against the single-task mean over seeds) or ``"per-seed"`` (against
            the same seed's single-task runs); see the module notes.

    Raises:
        ResultsError: a run lacks a column's task or uses a different primary metric, a value is unusable, or the
            baseline mode is unknown.
    """
    if baseline_mode not in BASELINE_MODES:
        raise ResultsError(f"unknown baseline mode {baseline_mode!r}; valid: {', '.join(BASELINE_MODES)}")
    arms = [single_arm(r) if isinstance(r, RunResult) else r for r in runs]
    base = single_arm(baseline) if isinstance(baseline, RunResult) else baseline
    widest = max(base.runs.values(), key=lambda run: len(run.tasks))
    columns = _columns(arms, widest, tasks)
    # a seed whose single-task runs miss a column's task is left out of the baseline (its runs use the mean)
    base = Arm(base.name, {seed: run for seed, run in base.runs.items() if all(c.task in run.tasks for c in columns)})
    per_seed = {seed: _values(run, columns) for seed, run in base.runs.items()}
    mean = {c.task: sum(v[c.task] for v in per_seed.values()) / len(per_seed) for c in columns}
    refs = _References(per_seed, mean, baseline_mode)
    counts = [0, 0]
    rows = [_row(arm, columns, refs, counts) for arm in arms]
    if include_baseline:
        rows.insert(0, _row(base, columns, refs, [0, 0], is_baseline=True))
    rows, anchor = _with_reference(rows, reference)
    n_max = max((row.n for row in rows), default=1)
    compared = sum(row.versus_reference is not None and row.versus_p is not None for row in rows)
    return ResultsTable(
        columns, tuple(rows), anchor, _notes(counts, anchor, n_max, baseline_mode, compared), baseline_mode
    )
