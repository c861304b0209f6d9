"""Multi-task performance relative to a single-task baseline: per-task M_i and Δm (the paper's Eq. (5))."""

from __future__ import annotations

import math
from collections.abc import Mapping

from taskbalance.results.errors import ResultsError


def task_improvements(
    metrics: Mapping[str, float], baseline: Mapping[str, float], higher_is_better: Mapping[str, bool]
) -> dict[str, float]:
    """``M_i = (−1)^{l_i} · (M_{m,i} − M_{b,i}) / M_{b,i} · 100`` for every task of ``metrics`` (percent).

    ``l_i = 1`` when a lower value is better (``higher_is_better[task]`` is False). ``metrics`` and ``baseline``
    map each task to its primary metric value.

    Raises:
        ResultsError: a task of ``metrics`` has no baseline or direction, a value is not finite, or a baseline
            value is 0 (the relative change is undefined).
    """
    if not metrics:
        raise ResultsError("no task to compare: the metrics are empty")
    improvements: dict[str, float] = {}
    for task, value in metrics.items():
        if task not in baseline:
            raise ResultsError(
                f"task {task!r} has no single-task baseline value (baseline tasks: {', '.join(baseline)})"
            )
        if task not in higher_is_better:
            raise ResultsError(f"task {task!r}: whether higher is better is not given")
        reference = baseline[task]
        if not (math.isfinite(value) and math.isfinite(reference)):
            raise ResultsError(f"task {task!r}: metric {value} or baseline {reference} is not finite")
        if reference == 0:
            raise ResultsError(f"task {task!r}: the baseline value is 0, so the relative change is undefined")
        sign = 1.0 if higher_is_better[task] else -1.0
        improvements[task] = 100.0 * sign * (value - reference) / reference
    return improvements


def delta_m(metrics: Mapping[str, float], baseline: Mapping[str, float], higher_is_better: Mapping[str, bool]) -> float:
    """Δm in percent, the paper's Eq. (5): ``(1/T) Σ_i M_i`` over the T tasks of ``metrics``.

    Same as MTLP's ``calculate_multi_task_performance`` with one (primary) metric per task; see
    :func:`task_improvements` for ``M_i`` and the errors raised.
    """
    improvements = task_improvements(metrics, baseline, higher_is_better)
    return sum(improvements.values()) / len(improvements)
