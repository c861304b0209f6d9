"""The convergence rule on hand-made validation curves: best step before the last 10%, or validation Δm moving less
than 0.5 points over the last quarter; per-task fallback without a single-task reference."""

import pytest

from taskbalance.results import ResultsError
from taskbalance.results.convergence import check_convergence

UP = {"semseg": True, "depth": False}
REFERENCE = {"semseg": 40.0, "depth": 0.5}


def curve(*points):
    return [(step, {"semseg": seg, "depth": dep}) for step, seg, dep in points]


def test_best_step_before_the_last_10_percent_is_converged_whatever_the_movement():
    c = check_convergence(curve((500, 30.0, 0.6), (900, 40.0, 0.5), (1000, 20.0, 0.9)), 1000, 900, UP, REFERENCE)
    assert c.converged and c.best_step == 900
    late = check_convergence(curve((500, 30.0, 0.6), (900, 40.0, 0.5), (1000, 20.0, 0.9)), 1000, 901, UP, REFERENCE)
    assert not late.converged


def test_last_quarter_movement_of_validation_delta_m():
    # Δm at 750: (36/40 - 1 + 0) / 2 * 100 = -5; at 1000: (36.36/40 - 1) / 2 * 100 = -4.55 -> moved 0.45 < 0.5
    flat = check_convergence(curve((500, 30.0, 0.5), (750, 36.0, 0.5), (1000, 36.36, 0.5)), 1000, 1000, UP, REFERENCE)
    assert flat.converged and flat.move == pytest.approx(0.45) and flat.measure == "validation Δm"
    # to 36.44: Δm -4.45, moved 0.55
    rising = check_convergence(curve((500, 30.0, 0.5), (750, 36.0, 0.5), (1000, 36.44, 0.5)), 1000, 1000, UP, REFERENCE)
    assert not rising.converged and rising.move == pytest.approx(0.55)
    assert rising.text() == "best step 1000 of 1000; validation Δm moved 0.55 over the last quarter"


def test_without_reference_each_task_metric_is_used_in_percent():
    # semseg 36 -> 36.1 (+0.28%), depth 0.5 -> 0.503 (+0.6%): the largest, 0.6, is not below 0.5
    c = check_convergence(curve((750, 36.0, 0.5), (1000, 36.1, 0.503)), 1000, 1000, UP)
    assert not c.converged and c.move == pytest.approx(0.6) and c.measure.startswith("largest per-task")
    # a reference lacking a task also falls back
    assert check_convergence(
        curve((750, 36.0, 0.5), (1000, 36.1, 0.503)), 1000, 1000, UP, {"semseg": 40.0}
    ).move == pytest.approx(0.6)


def test_one_evaluation_at_the_end_cannot_show_convergence():
    c = check_convergence(curve((1000, 36.0, 0.5)), 1000, 1000, UP, REFERENCE)
    assert not c.converged and c.move is None and "moved n/a" in c.text()
    with pytest.raises(ResultsError, match="no validation evaluation"):
        check_convergence([], 1000, None, UP)
