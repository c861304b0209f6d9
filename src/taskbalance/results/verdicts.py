"""The paper's claims, judged from a results table over seeds (and, for (d), the runs' gradient diagnostics).

Every test is two-sided at α = 0.05 unless said otherwise, over the seeds the compared arms share:

* (a) **uniform weights leave tasks behind.** Per task, the one-sample t-test of ``M_i = 0`` under uniform weights,
  with Holm's correction across the tasks. *Supported* when some task is significantly below single-task (Holm-
  adjusted p < 0.05, mean below 0). *Not supported* when every task is shown not to be behind by more than the
  margin δ: each task's one-sided test of ``M_i > −δ`` at 5% (its 90% interval's low end above −δ; an
  intersection–union test, which needs no correction). *Inconclusive* otherwise.
* (b) **AvgNorm comes close to the grid search**, an equivalence test (TOST at 5% each side): the paired 90%
  t-interval of AvgNorm − grid (the grid point selected on validation) lies inside ``[−δ, δ]``: *supported*; it lies
  entirely outside (below −δ or above +δ): *not supported*; otherwise *inconclusive*. The margin δ
  (``equivalence_margin`` of the study preset, default :data:`DEFAULT_MARGIN` Δm points) is fixed before the study
  runs and printed with the verdict.
* (c) **the best arm**: the arm with the highest mean Δm, *supported* as the best when the paired 95% interval of its
  difference to the runner-up lies above 0, otherwise *inconclusive*.
* (d) **imbalance follows the gradient norm, not the angle** (the paper's central claim): see
  :mod:`taskbalance.results.norm_angle` for the quantities and :func:`norm_explains_drop` for the rule.

Every paired comparison states its minimum detectable difference at 80% power and the seeds the margin δ would
need (:mod:`taskbalance.results.power`); an inconclusive verdict says which paired sd, or how many seeds at the
observed sd, would decide it. With one seed everything is inconclusive: one seed cannot separate the arms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from taskbalance.conventions import TASK_LABELS
from taskbalance.results.errors import ResultsError
from taskbalance.results.norm_angle import ANGLE_MEASURES, NEGLIGIBLE_RHO, NormAngle
from taskbalance.results.power import (
    ALPHA,
    MAX_SEEDS,
    POWER,
    max_sd_for_equivalence,
    paired_power,
    seeds_for_equivalence,
)
from taskbalance.results.render import format_delta, format_interval
from taskbalance.results.stats import holm, interval_at, paired_difference, summary_json, t_test_p
from taskbalance.results.table import ResultsTable, Row

Status = Literal["supported", "not supported", "inconclusive"]
ONE_SEED = "one seed cannot separate the arms"
#: Default equivalence / non-inferiority margin δ in Δm points (percent).
DEFAULT_MARGIN = 2.0
#: Confidence of the interval of the equivalence and non-inferiority tests (TOST at 5% each side).
EQUIVALENCE_CONFIDENCE = 0.90
#: How the report states the multiplicity corrections.
CORRECTIONS = ("Claim (a) corrects its per-task tests with Holm's method across the tasks; the `*` marks against "
               "uniform are Holm-corrected across the arms compared with uniform; (b) is an equivalence test (TOST, "
               "the paired 90% interval inside ±δ).")


@dataclass(frozen=True)
class Verdict:
    """One claim, its status at ``n`` seeds, the evidence in words and its numbers (``details``, JSON-ready)."""

    claim: str
    status: Status
    n: int
    evidence: str
    details: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """``claim: **status at n seeds**. evidence``."""
        return f"{self.claim}: **{self.status} at {_seeds(self.n)}**. {self.evidence}"


def _seeds(n: int) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{n} seed{'s' if n != 1 else ''}"


def _mean_ci(row: Row) -> str:
    return f"Δm {format_delta(row.delta_m.mean)}% {format_interval(row.delta_m)}"


def _power_text(sd: float | None, n: int, margin: float) -> tuple[str, dict[str, Any] | None]:
    power = paired_power(sd, n, margin)
    if power is None:
        return "", None
    return f" Power: {power.text()}.", power.__dict__


def uniform_leaves_tasks_behind(
    table: ResultsTable, uniform: str = "uniform", margin: float = DEFAULT_MARGIN
) -> Verdict | None:
    """(a) Holm-corrected per-task tests of ``M_i`` under uniform weights (see the module notes). None without a
    uniform row."""
    row = table.row(uniform)
    if row is None:
        return None
    claim = "(a) Uniform weights leave tasks significantly below single-task"
    labels = [TASK_LABELS.get(c.task, c.task) for c in table.columns]
    p_values = {label: t_test_p(m) for label, m in zip(labels, row.improvements)}
    adjusted = holm(p_values)
    parts = [f"{label} {format_delta(m.mean)}% {format_interval(m)}"
             + (f" (Holm p {adjusted[label]:.3g})" if adjusted[label] is not None else "")
             for label, m in zip(labels, row.improvements)]
    evidence = f"M_i under uniform weights, 95% intervals: {'; '.join(parts)}."
    details: dict[str, Any] = {"margin": margin, "tasks": [c.task for c in table.columns],
                               "improvements": [summary_json(m) for m in row.improvements],
                               "p": list(p_values.values()), "p_holm": list(adjusted.values())}
    if row.n < 2:
        return Verdict(claim, "inconclusive", row.n, f"{evidence} No interval: {ONE_SEED}.", details)
    below = [label for label, m in zip(labels, row.improvements)
             if (p_holm := adjusted[label]) is not None and p_holm < ALPHA and m.mean < 0]
    if below:
        return Verdict(claim, "supported", row.n, f"Significantly below single-task (Holm-corrected across "
                       f"{len(labels)} tasks): {', '.join(below)}; {evidence}", details)
    lows = [None if (bounds := interval_at(m, EQUIVALENCE_CONFIDENCE)) is None else bounds[0] for m in row.improvements]
    details["low_90"] = lows
    if all(low is not None and low > -margin for low in lows):
        return Verdict(
            claim,
            "not supported",
            row.n,
            f"No task is behind by more than the margin δ = {margin:g}: every "
            f"task's 90% interval lies above −{margin:g}. {evidence}",
            details,
        )
    undecided = [(label, m) for label, m, low in zip(labels, row.improvements, lows) if low is None or low <= -margin]
    powers = [(label, paired_power(m.std, m.n, margin)) for label, m in undecided]
    power = "; ".join(f"{label}: {figures.text()}" for label, figures in powers if figures is not None)
    return Verdict(claim, "inconclusive", row.n, f"No task is significantly below single-task after Holm's correction, "
                   f"and not every task is shown within δ = {margin:g} of it. {evidence} To decide: {power}.", details)


def avgnorm_near_grid(table: ResultsTable, avgnorm: str = "avgnorm", grid: str = "grid search",
                      grid_choice: str = "", margin: float = DEFAULT_MARGIN) -> Verdict | None:
    """(b) The equivalence test of AvgNorm and the grid at margin ``margin`` (see the module notes).

    ``grid_choice`` says how the grid point was chosen. None without both rows."""
    row, grid_row = table.row(avgnorm), table.row(grid)
    if row is None or grid_row is None:
        return None
    if margin <= 0:
        raise ResultsError(f"the equivalence margin must be positive, got {margin}")
    claim = f"(b) AvgNorm comes close to the grid search (equivalence within δ = ±{margin:g} Δm points)"
    n = min(row.n, grid_row.n)
    gap = row.delta_m.mean - grid_row.delta_m.mean
    try:
        paired = paired_difference(row.seed_delta_m, grid_row.seed_delta_m, EQUIVALENCE_CONFIDENCE)
        n = paired.n
        paired_text = (
            f"; paired difference over {_seeds(paired.n)} in common {format_delta(paired.mean)}, "
            f"90% interval {format_interval(paired)}"
        )
    except ResultsError:
        paired = None
        paired_text = "; no common seed for a paired difference"
    evidence = (
        f"AvgNorm {_mean_ci(row)}, grid search{f' ({grid_choice})' if grid_choice else ''} {_mean_ci(grid_row)}: "
        f"AvgNorm is {format_delta(gap)} Δm-points from the grid{paired_text}."
    )
    details: dict[str, Any] = {"margin": margin, "confidence": EQUIVALENCE_CONFIDENCE, "paired": summary_json(paired)}
    if paired is None or paired.n < 2 or paired.low is None or paired.high is None or paired.std is None:
        return Verdict(claim, "inconclusive", n, f"{evidence} No paired interval: {ONE_SEED}.", details)
    power_text, details["power"] = _power_text(paired.std, paired.n, margin)
    needed = seeds_for_equivalence(paired.std, margin)
    sd_needed = max_sd_for_equivalence(paired.n, margin)
    details.update(equivalence_seeds=needed, equivalence_sd=sd_needed)
    decide = (f" The equivalence test at ±{margin:g} has {POWER:.0%} power (true difference 0) with "
              f"{needed if needed is not None else f'more than {MAX_SEEDS}'} seeds at the observed paired sd "
              f"{paired.std:.2f}, or at {paired.n} seeds with a paired sd ≤ {sd_needed:.2f}.")
    if -margin <= paired.low and paired.high <= margin:
        return Verdict(claim, "supported", n, f"Equivalent: the paired 90% interval lies inside ±{margin:g}. "
                       f"{evidence}{power_text}", details)
    if paired.high < -margin or paired.low > margin:
        side = "below" if paired.high < -margin else "above"
        return Verdict(claim, "not supported", n, f"Not equivalent: the paired 90% interval lies entirely {side} the "
                       f"margin ±{margin:g} (AvgNorm is {side} the grid). {evidence}{power_text}", details)
    return Verdict(claim, "inconclusive", n, f"The paired 90% interval is neither inside ±{margin:g} nor entirely "
                   f"outside it. {evidence}{power_text}{decide}", details)


def best_arm(table: ResultsTable, margin: float = DEFAULT_MARGIN) -> Verdict | None:
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
        return Verdict(
            claim,
            "inconclusive",
            min(best.n, runner_up.n),
            f"{best.name} {_mean_ci(best)}, {runner_up.name} {_mean_ci(runner_up)}; they share no seed to pair.",
        )
    evidence = (f"{best.name} {_mean_ci(best)}, {runner_up.name} {_mean_ci(runner_up)}; paired difference over "
                f"{_seeds(paired.n)} {format_delta(paired.mean)} {format_interval(paired)}.")
    details: dict[str, Any] = {"best": best.name, "runner_up": runner_up.name, "paired": summary_json(paired)}
    if paired.n < 2:
        return Verdict(claim, "inconclusive", paired.n, f"{evidence} No interval: {ONE_SEED}.", details)
    power_text, details["power"] = _power_text(paired.std, paired.n, margin)
    if paired.low is not None and paired.low > 0:
        return Verdict(claim, "supported", paired.n, f"Separable from the runner-up: the paired interval excludes 0. "
                       f"{evidence}{power_text}", details)
    return Verdict(
        claim,
        "inconclusive",
        paired.n,
        f"Not separable from the runner-up: the paired interval includes 0. {evidence}{power_text}",
        details,
    )


def _rho(summary: Any) -> str:
    return f"{summary.estimate:+.2f} [{summary.low:+.2f}, {summary.high:+.2f}]"


def norm_explains_drop(analysis: NormAngle | None) -> Verdict | None:
    """(d) Whether the per-task drop ``M_i`` follows the gradient-norm share better than the conflict angle.

    With ρ the Spearman correlation of ``M_i`` with a gradient measure over every (arm, seed, task) point and the
    intervals 95% percentile bootstrap intervals resampling seeds (:mod:`taskbalance.results.norm_angle`):

    * supported: for **each** angle measure (mean cosine to the other tasks, cosine to the update), the interval of
      ``|ρ_norm| − |ρ_angle|`` lies above 0 (the norm share explains the drop significantly better);
    * not supported: for some angle measure that interval lies below 0 (the angle explains it significantly
      better), or ρ_norm's interval lies inside ``(−NEGLIGIBLE_RHO, NEGLIGIBLE_RHO)`` (the norm share is shown to
      explain at most a negligible part);
    * inconclusive otherwise, and with fewer than 2 seeds.

    None when no run logged diagnostics."""
    if analysis is None:
        return None
    claim = (
        "(d) Imbalance follows the gradient norm, not the angle: the per-task drop M_i correlates more with the task's "
        "gradient-norm share than with its conflict angle"
    )
    parts = [f"ρ(M_i, norm share) {_rho(analysis.norm)}"]
    parts += [f"ρ(M_i, {label}) {_rho(analysis.angles[key])}, |ρ_norm| − |ρ| {_rho(analysis.differences[key])}"
              for key, label in ANGLE_MEASURES.items()]
    evidence = (f"Spearman over {analysis.points} (arm, seed, task) points of {analysis.arms} arms; 95% bootstrap "
                f"intervals over {analysis.resamples} resamples of {_seeds(analysis.n)} "
                f"({analysis.distinct} distinct): {'; '.join(parts)}.")
    details = analysis.as_dict()
    if analysis.n < 2:
        return Verdict(claim, "inconclusive", analysis.n, f"{evidence} No interval: {ONE_SEED}.", details)
    if all(analysis.differences[key].low > 0 for key in ANGLE_MEASURES):
        return Verdict(claim, "supported", analysis.n, f"The norm share explains the drop significantly better than "
                       f"either angle measure. {evidence}", details)
    better_angle = [label for key, label in ANGLE_MEASURES.items() if analysis.differences[key].high < 0]
    if better_angle:
        return Verdict(claim, "not supported", analysis.n, f"The angle ({', '.join(better_angle)}) explains the drop "
                       f"significantly better than the norm share. {evidence}", details)
    if analysis.norm.low > -NEGLIGIBLE_RHO and analysis.norm.high < NEGLIGIBLE_RHO:
        return Verdict(
            claim,
            "not supported",
            analysis.n,
            f"The norm share's correlation with the drop is negligible: its "
            f"interval lies inside ±{NEGLIGIBLE_RHO:g}. {evidence}",
            details,
        )
    needed = {
        label: _seeds_to_exclude_zero(analysis.differences[key], analysis.n) for key, label in ANGLE_MEASURES.items()
    }
    details["seeds_to_decide"] = dict(needed)
    decide = "; ".join(
        f"vs the {label}: "
        f"{'about ' + str(n) + ' seeds' if n is not None else 'no number of seeds (the difference is 0)'}"
        for label, n in needed.items()
    )
    return Verdict(
        claim,
        "inconclusive",
        analysis.n,
        f"The intervals of the differences include 0. {evidence} To decide "
        f"(if the differences stay as estimated; approximation: bootstrap intervals narrow as 1/√seeds): "
        f"{decide}.",
        details,
    )


def _seeds_to_exclude_zero(difference: Any, n: int) -> int | None:
    """The seeds at which an interval of half-width ``h`` (now, at ``n`` seeds) around the estimate ``D`` would
    exclude 0, with the width shrinking as 1/√seeds: ``⌈n · (h / |D|)²⌉`` (None for D = 0)."""
    half = (difference.high - difference.low) / 2
    if difference.estimate == 0:
        return None
    return max(n + 1, math.ceil(n * (half / abs(difference.estimate)) ** 2))


def judge_claims(
    table: ResultsTable,
    uniform: str = "uniform",
    avgnorm: str = "avgnorm",
    grid: str = "grid search",
    grid_choice: str = "",
    margin: float = DEFAULT_MARGIN,
    gradients: NormAngle | None = None,
) -> list[Verdict]:
    """The verdicts (a), (b), (c), (d) that the table's rows and the diagnostics allow (a claim whose arms or data are
    missing is left out). ``margin`` is the equivalence margin δ of (b), also the non-inferiority margin of (a) and
    the difference every power statement refers to."""
    found = (
        uniform_leaves_tasks_behind(table, uniform, margin),
        avgnorm_near_grid(table, avgnorm, grid, grid_choice, margin),
        best_arm(table, margin),
        norm_explains_drop(gradients),
    )
    return [v for v in found if v is not None]
