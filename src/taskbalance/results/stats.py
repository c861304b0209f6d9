"""Statistics over seeds: mean, sample standard deviation and a t-based 95% interval, for one arm or for the
per-seed difference of two arms (a paired comparison); the two-sided t-test p-value of a summary and Holm's
step-down correction of a family of p-values.

With the few seeds a study affords (n = 2-10) the interval is Student's t: ``mean ± t_{0.975, n-1} · s / √n``
with ``s`` the sample standard deviation (``n - 1`` in the denominator). One value has no spread and no
interval: ``std``, ``low`` and ``high`` are None and nothing is significant.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from taskbalance.results.errors import ResultsError

#: The confidence level of every interval in the tables and verdicts.
CONFIDENCE = 0.95
#: How the intervals are labelled wherever they are printed.
INTERVAL_LABEL = "95% t-interval over seeds"


@dataclass(frozen=True)
class Summary:
    """A quantity over ``n`` seeds: mean, sample std and the t-based interval (None for n = 1)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or entirely below 0 (never for n = 1)."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def contains(self, value: float) -> bool:
        """True when ``value`` lies in the interval (False for n = 1: there is no interval)."""
        return self.low is not None and self.high is not None and self.low <= value <= self.high


def summary_json(summary: Summary | None) -> dict[str, float | int | None] | None:
    """``{"n", "mean", "std", "low", "high"}`` of ``summary`` (None for None): a summary in report.json and in the
    verdicts' details."""
    return None if summary is None else {"n": summary.n, "mean": summary.mean, "std": summary.std,
                                         "low": summary.low, "high": summary.high}


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean, sample standard deviation and the two-sided t interval of ``values`` (one value per seed).

    Raises:
        ResultsError: no value, a value that is not finite, or a confidence outside (0, 1).
    """
    if not values:
        raise ResultsError("no value to summarize")
    if not 0 < confidence < 1:
        raise ResultsError(f"confidence must be in (0, 1), got {confidence}")
    data = [float(v) for v in values]
    if not all(math.isfinite(v) for v in data):
        raise ResultsError(f"cannot summarize non-finite values {data}")
    n = len(data)
    mean = math.fsum(data) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    from scipy import stats  # on use: keeps `taskbalance --help` from importing scipy

    std = math.sqrt(math.fsum((v - mean) ** 2 for v in data) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def paired_difference(a: Mapping[Hashable, float], b: Mapping[Hashable, float],
                      confidence: float = CONFIDENCE) -> Summary:
    """Summary of ``a[s] − b[s]`` over the seeds ``s`` both arms have (a paired comparison).

    Raises:
        ResultsError: the two arms share no seed.
    """
    common = [s for s in a if s in b]
    if not common:
        raise ResultsError(f"the arms share no seed (seeds {sorted(map(str, a))} and {sorted(map(str, b))})")
    return summarize([a[s] - b[s] for s in common], confidence)


def interval_at(summary: Summary, confidence: float) -> tuple[float, float] | None:
    """The two-sided t-interval of the summary's mean at another ``confidence`` (e.g. 0.90, whose low end is the
    one-sided 95% bound); None for one value."""
    if summary.n < 2 or summary.std is None:
        return None
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, summary.n - 1)) * summary.std / math.sqrt(summary.n)
    return summary.mean - half, summary.mean + half


def t_test_p(summary: Summary, null: float = 0.0) -> float | None:
    """Two-sided p-value of the one-sample (or paired) t-test of ``mean = null`` over the summary's ``n`` values:
    ``2 · P(T_{n−1} > |mean − null| / (s / √n))``. None for one value; with ``s = 0`` it is 0 (mean ≠ null) or 1."""
    if summary.n < 2 or summary.std is None:
        return None
    if summary.std == 0:
        return 0.0 if summary.mean != null else 1.0
    from scipy import stats

    statistic = abs(summary.mean - null) / (summary.std / math.sqrt(summary.n))
    return float(2 * stats.t.sf(statistic, summary.n - 1))


K = TypeVar("K")


def holm(p_values: Mapping[K, float | None]) -> dict[K, float | None]:
    """Holm's step-down adjusted p-values of a family of tests (None entries are not tests and stay None).

    With the ``m`` p-values sorted ascending, ``p̃_(k) = max_{j ≤ k} min(1, (m − j + 1) · p_(j))``; rejecting where
    ``p̃ < α`` controls the family-wise error rate at ``α`` under any dependence between the tests.
    """
    tested = sorted((p, i) for i, p in enumerate(p_values.values()) if p is not None)
    keys = list(p_values)
    adjusted: dict[K, float | None] = {key: None for key in keys}
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[keys[index]] = running
    return adjusted
