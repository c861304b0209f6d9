"""Whether a run was trained long enough, from its validation curve.

A run is **converged** when either

* its selected (best) validation step is not in the last 10% of training (``best_step ≤ 0.9 · steps``), or
* its validation Δm moves less than :data:`MOVE_LIMIT` = 0.5 points over the last quarter of training:
  ``|Δm(last evaluation) − Δm(last evaluation at or before 0.75 · steps)|``. Δm is taken against the single-task
  validation reference when one is given; without one, each task's primary validation metric is used instead, as
  its relative change in percent over the last quarter, and the largest over the tasks must stay below 0.5.

An arm is converged when all its seeds are; the report flags the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taskbalance.results.delta import delta_m
from taskbalance.results.errors import ResultsError

#: Points (Δm, or percent change of a task metric) the last quarter may move for a converged run.
MOVE_LIMIT = 0.5
#: The best step must not lie in this last fraction of training.
LATE_FRACTION = 0.1
#: The window whose movement is measured.
LAST_QUARTER = 0.25

Curve = Sequence[tuple[int, Mapping[str, float]]]  # (step, task -> primary validation metric), ascending steps


@dataclass(frozen=True)
class Convergence:
    """One run's convergence check (see the module notes); ``move`` is None when the curve has one evaluation."""

    converged: bool
    steps: int
    best_step: int | None
    move: float | None
    measure: str

    def text(self) -> str:
        """``best step 1100 of 1200; validation Δm moved 0.62 over the last quarter``."""
        best = f"best step {self.best_step} of {self.steps}" if self.best_step is not None else f"{self.steps} steps"
        moved = "n/a" if self.move is None else f"{self.move:.2f}"
        return f"{best}; {self.measure} moved {moved} over the last quarter"


def _series(curve: Curve, reference: Mapping[str, float] | None,
            higher_is_better: Mapping[str, bool]) -> list[tuple[int, dict[str, float]]]:
    if reference is not None and all(set(values) <= set(reference) for _, values in curve):
        try:
            return [(step, {"Δm": delta_m(values, reference, higher_is_better)}) for step, values in curve]
        except ResultsError:  # e.g. a reference value of 0: fall back to the per-task metrics
            pass
    return [(step, dict(values)) for step, values in curve]


def check_convergence(curve: Curve, steps: int, best_step: int | None, higher_is_better: Mapping[str, bool],
                      reference: Mapping[str, float] | None = None) -> Convergence:
    """The convergence check of one run's validation ``curve`` over ``steps`` training steps.

    ``reference``: the single-task validation values per task (Δm along the curve); None, or a reference that lacks
    one of the curve's tasks, falls back to the per-task metrics.

    Raises:
        ResultsError: an empty curve or a non-positive number of steps.
    """
    if not curve:
        raise ResultsError("no validation evaluation to judge convergence from")
    if steps <= 0:
        raise ResultsError(f"the training length must be positive, got {steps}")
    series = _series(curve, reference, higher_is_better)
    by_delta = list(series[0][1]) == ["Δm"]
    measure = "validation Δm" if by_delta else "largest per-task validation change (%)"
    window_start = [values for step, values in series if step <= (1 - LAST_QUARTER) * steps]
    start, last = (window_start[-1] if window_start else series[0][1]), series[-1][1]
    if len(series) < 2:
        move = None
    elif by_delta:
        move = abs(last["Δm"] - start["Δm"])
    else:
        move = max(
            abs(100.0 * (last[t] - start[t]) / start[t]) if start[t] else abs(last[t] - start[t])
            for t in last
            if t in start
        )
    early_best = best_step is not None and best_step <= (1 - LATE_FRACTION) * steps
    return Convergence(early_best or (move is not None and move < MOVE_LIMIT), steps, best_step, move, measure)
