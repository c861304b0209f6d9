"""The paper's claims, judged from the intervals of a results table over seeds.

* (a) uniform weights leave tasks behind: which tasks' ``M_i`` under uniform weights have a 95% interval entirely
  below 0 (significantly below single-task);
* (b) AvgNorm comes close to the grid search: whether AvgNorm's mean Δm lies within the grid-search arm's interval
  (with a paired interval narrow enough to resolve the grid's gain over uniform), and otherwise how far away it is,
  with the paired difference;
* (c) the best arm, and whether it is separable from the runner-up (paired difference's interval excludes 0).

Each verdict is "supported", "not supported" or "inconclusive", always "at n seeds"; with one seed everything is
inconclusive, because one seed cannot separate the arms. Never a bare ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from taskbalance.conventions import TASK_LABELS
from taskbalance.results.errors import ResultsError
from taskbalance.results.render import format_delta, format_interval
from taskbalance.results.stats import INTERVAL_LABEL, paired_difference
from taskbalance.results.table import ResultsTable, Row

Status = Literal["supported", "not supported", "inconclusive"]
ONE_SEED = "one seed cannot separate the arms"


@dataclass(frozen=True)
class Verdict:
    """One claim, its status at ``n`` seeds, and the evidence in words."""

    claim: str
    status: Status
    n: int
    evidence: str

    def text(self) -> str:
        """``claim: **status at n seeds**. evidence``."""
        return f"{self.claim}: **{self.status} at {self.n} seed{'s' if self.n != 1 else ''}**. {self.evidence}"


def _mean_ci(row: Row) -> str:
    return f"Δm {format_delta(row.delta_m.mean)}% {format_interval(row.delta_m)}"


def uniform_leaves_tasks_behind(table: ResultsTable, uniform: str = "uniform") -> Verdict | None:
    """(a) Supported when some task's ``M_i`` interval under uniform weights lies below 0; not supported when every
    task's interval lies at or above 0; otherwise (or with one seed) inconclusive. None without a uniform row."""
    row = table.row(uniform)
    if row is None:
        return None
    claim = "(a) Uniform weights leave tasks significantly below single-task"
    parts = [f"{TASK_LABELS.get(c.task, c.task)} {format_delta(m.mean)}% {format_interval(m)}"
             for c, m in zip(table.columns, row.improvements)]
    below = [TASK_LABELS.get(c.task, c.task) for c, m in zip(table.columns, row.improvements) if m.high is not None and m.high < 0]
    evidence = f"M_i under uniform weights: {'; '.join(parts)}."
    if row.n < 2:
        return Verdict(claim, "inconclusive", row.n, f"{evidence} No interval: {ONE_SEED}.")
    if below:
        return Verdict(claim, "supported", row.n, f"Significantly below single-task: {', '.join(below)}; {evidence}")
    if all(m.low is not None and m.low >= 0 for m in row.improvements):
        return Verdict(claim, "not supported", row.n, f"No task is below single-task; every interval lies at or above 0. {evidence}")
    return Verdict(claim, "inconclusive", row.n, f"No task's interval lies entirely below 0. {evidence}")


def avgnorm_near_grid(table: ResultsTable, avgnorm: str = "avgnorm", grid: str = "grid search",
                      grid_choice: str = "", uniform: str = "uniform") -> Verdict | None:
    """(b) Whether AvgNorm's Δm is within the grid arm's interval, or how far away it is.

    * not supported: the paired difference AvgNorm − grid has an interval below 0;
    * supported: that interval lies above 0 (AvgNorm beats the grid), or AvgNorm's mean Δm lies within (or above)
      the grid's interval **and** the study resolves differences of the size that matters: the paired interval's
      half-width is smaller than the grid's mean gain over uniform (without a uniform row this check is skipped);
    * inconclusive otherwise (intervals too wide to call AvgNorm close), and always with one seed.

    ``grid_choice`` says how the grid point was chosen. None without both rows."""
    row, grid_row = table.row(avgnorm), table.row(grid)
    if row is None or grid_row is None:
        return None
    claim = "(b) AvgNorm comes close to the grid search"
    n = min(row.n, grid_row.n)
    gap = row.delta_m.mean - grid_row.delta_m.mean
    try:
        paired = paired_difference(row.seed_delta_m, grid_row.seed_delta_m)
        paired_text = f"; paired difference over {paired.n} common seeds {format_delta(paired.mean)} {format_interval(paired)}"
    except ResultsError:
        paired = None
        paired_text = "; no common seed for a paired difference"
    evidence = (f"AvgNorm {_mean_ci(row)}, grid search{f' ({grid_choice})' if grid_choice else ''} {_mean_ci(grid_row)}: "
                f"AvgNorm is {format_delta(gap)} Δm-points from the grid{paired_text}.")
    if n < 2 or paired is None or paired.low is None or paired.high is None:
        return Verdict(claim, "inconclusive", n, f"{evidence} No paired interval: {ONE_SEED}.")
    if paired.high < 0:
        return Verdict(claim, "not supported", n, f"AvgNorm is below the grid: the paired interval excludes 0. {evidence}")
    if paired.low > 0:
        return Verdict(claim, "supported", n, f"AvgNorm is above the grid: the paired interval excludes 0. {evidence}")
    inside = grid_row.delta_m.contains(row.delta_m.mean) or (grid_row.delta_m.high is not None and row.delta_m.mean > grid_row.delta_m.high)
    if not inside:
        return Verdict(claim, "inconclusive", n, f"AvgNorm lies below the grid's interval, but the paired interval includes 0. {evidence}")
    uniform_row = table.row(uniform)
    half_width = (paired.high - paired.low) / 2
    if uniform_row is not None:
        gain = grid_row.delta_m.mean - uniform_row.delta_m.mean
        resolution = (f" The paired interval's half-width {half_width:.2f} is {'smaller' if half_width < abs(gain) else 'not smaller'} "
                      f"than the grid's gain over uniform ({format_delta(gain)} Δm-points).")
        if half_width >= abs(gain):
            return Verdict(claim, "inconclusive", n, f"AvgNorm's mean Δm lies within the grid's {INTERVAL_LABEL}, but the "
                           f"intervals are too wide to call it close.{resolution} {evidence}")
    else:
        resolution = ""
    return Verdict(claim, "supported", n, f"AvgNorm's mean Δm lies within the grid's {INTERVAL_LABEL}.{resolution} {evidence}")


def best_arm(table: ResultsTable) -> Verdict | None:
    """(c) The arm with the highest mean Δm; supported as the best when its paired difference to the runner-up has an
    interval above 0, otherwise inconclusive (the two cannot be separated). None with fewer than two arms."""
    rows = sorted((r for r in table.rows if not r.is_baseline), key=lambda r: r.delta_m.mean, reverse=True)
    if len(rows) < 2:
        return None
    best, runner_up = rows[0], rows[1]
    claim = f"(c) {best.name} is the best arm (highest mean Δm), ahead of the runner-up {runner_up.name}"
    try:
        paired = paired_difference(best.seed_delta_m, runner_up.seed_delta_m)
    except ResultsError:
        return Verdict(claim, "inconclusive", min(best.n, runner_up.n),
                       f"{best.name} {_mean_ci(best)}, {runner_up.name} {_mean_ci(runner_up)}; they share no seed to pair.")
    evidence = (f"{best.name} {_mean_ci(best)}, {runner_up.name} {_mean_ci(runner_up)}; paired difference over "
                f"{paired.n} seeds {format_delta(paired.mean)} {format_interval(paired)}.")
    if paired.n < 2:
        return Verdict(claim, "inconclusive", paired.n, f"{evidence} No interval: {ONE_SEED}.")
    if paired.low is not None and paired.low > 0:
        return Verdict(claim, "supported", paired.n, f"Separable from the runner-up: the paired interval excludes 0. {evidence}")
    return Verdict(claim, "inconclusive", paired.n, f"Not separable from the runner-up: the paired interval includes 0. {evidence}")


def judge_claims(table: ResultsTable, uniform: str = "uniform", avgnorm: str = "avgnorm", grid: str = "grid search",
                 grid_choice: str = "") -> list[Verdict]:
    """The verdicts (a), (b), (c) that the table's rows allow (a claim whose arms are missing is left out)."""
    found = (uniform_leaves_tasks_behind(table, uniform), avgnorm_near_grid(table, avgnorm, grid, grid_choice, uniform),
             best_arm(table))
    return [v for v in found if v is not None]
