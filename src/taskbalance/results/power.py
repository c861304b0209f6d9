"""Statistical power of the paired comparisons over seeds, from the noncentral t distribution (no approximation
except where said).

* :func:`min_detectable_difference`: the smallest true mean difference that a two-sided paired t-test at level
  ``alpha`` over ``n`` seeds detects with probability ``power``, given the paired standard deviation ``sd``:
  ``δ = λ · sd / √n`` with ``λ`` the noncentrality at which
  ``P(T'_{n−1,λ} > t_{1−α/2}) + P(T'_{n−1,λ} < −t_{1−α/2}) = power`` (exact for normal differences).
* :func:`seeds_to_detect`: the fewest seeds whose minimum detectable difference is at most a given difference.
* :func:`equivalence_power`: the power of the equivalence test (TOST at level ``alpha``, i.e. the paired
  ``1 − 2α`` interval inside ``±margin``) when the true difference is 0, by the Bonferroni bound
  ``1 − 2 · P(T'_{n−1, margin·√n/sd} ≤ t_{1−α})``: a documented, slightly conservative approximation (it ignores
  that the two one-sided tests share ``s``), accurate where the power is high.
* :func:`seeds_for_equivalence` and :func:`max_sd_for_equivalence`: what an equivalence test would need.

``sd`` is the sample standard deviation of the paired differences (the best estimate a study has of the true one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from taskbalance.results.errors import ResultsError

#: Two-sided level of every test whose power is stated.
ALPHA = 0.05
#: Power at which detectable differences and needed seeds are stated.
POWER = 0.8
#: Seeds beyond this are reported as "more than" this.
MAX_SEEDS = 100_000


def _check(sd: float, n: int) -> None:
    if not (math.isfinite(sd) and sd >= 0):
        raise ResultsError(f"the paired standard deviation must be finite and non-negative, got {sd}")
    if n < 2:
        raise ResultsError(f"a paired t-test needs at least 2 seeds, got {n}")


def _nct_cdf(x: float, df: int, ncp: float) -> float:
    """``P(T'_{df,ncp} ≤ x)``; scipy returns NaN deep in a tail, where the value is 0 (x far below ncp) or 1."""
    from scipy import stats

    value = float(stats.nct.cdf(x, df, ncp))
    return value if math.isfinite(value) else (0.0 if x < ncp else 1.0)


def detection_power(difference: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` over ``n`` seeds when the true mean difference is
    ``difference`` and the paired standard deviation ``sd``."""
    _check(sd, n)
    if sd == 0:
        return 1.0 if difference != 0 else alpha
    from scipy import stats

    critical = float(stats.t.ppf(1 - alpha / 2, n - 1))
    ncp = abs(difference) * math.sqrt(n) / sd
    return 1.0 - _nct_cdf(critical, n - 1, ncp) + _nct_cdf(-critical, n - 1, ncp)


def min_detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference (same unit as ``sd``) the paired t-test detects with probability ``power``."""
    _check(sd, n)
    if sd == 0:
        return 0.0
    from scipy import optimize

    high = 1.0
    while detection_power(high, 1.0, n, alpha) < power:
        high *= 2
    per_sd = optimize.brentq(lambda x: detection_power(x, 1.0, n, alpha) - power, 0.0, high, xtol=1e-10)
    return float(per_sd * sd)


def _fewest(ok: Callable[[int], bool]) -> int | None:
    """The smallest n in [2, MAX_SEEDS] with ``ok(n)`` (monotone in n), or None."""
    if not ok(MAX_SEEDS):
        return None
    low, high = 2, 2
    while not ok(high):
        low, high = high + 1, min(high * 2, MAX_SEEDS)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if ok(middle) else (middle + 1, high)
    return low


def seeds_to_detect(sd: float, difference: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The fewest seeds (≥ 2) at which the paired t-test detects ``difference`` with probability ``power``; None
    beyond :data:`MAX_SEEDS` (or for a zero difference)."""
    _check(sd, 2)
    if difference == 0:
        return None
    return _fewest(lambda n: detection_power(difference, sd, n, alpha) >= power)


def equivalence_power(sd: float, n: int, margin: float, alpha: float = ALPHA) -> float:
    """Approximate power of TOST (level ``alpha`` each side) to conclude ``|difference| < margin`` when the true
    difference is 0 (see the module notes)."""
    _check(sd, n)
    if margin <= 0:
        raise ResultsError(f"the equivalence margin must be positive, got {margin}")
    if sd == 0:
        return 1.0
    from scipy import stats

    critical = stats.t.ppf(1 - alpha, n - 1)
    return max(0.0, 1.0 - 2.0 * _nct_cdf(float(critical), n - 1, margin * math.sqrt(n) / sd))


def seeds_for_equivalence(sd: float, margin: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The fewest seeds at which the equivalence test at ``margin`` has probability ``power`` of concluding
    equivalence when the true difference is 0; None beyond :data:`MAX_SEEDS`."""
    return _fewest(lambda n: equivalence_power(sd, n, margin, alpha) >= power)


def max_sd_for_equivalence(n: int, margin: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The largest paired standard deviation at which ``n`` seeds give the equivalence test at ``margin`` the
    probability ``power`` (true difference 0)."""
    from scipy import optimize

    return float(
        optimize.brentq(
            lambda sd: equivalence_power(sd, n, margin, alpha) - power, 1e-3 * margin, 1e3 * margin, xtol=1e-10 * margin
        )
    )


def max_sd_to_detect(n: int, difference: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The largest paired standard deviation at which ``n`` seeds detect ``difference`` with probability ``power``."""
    return abs(difference) / min_detectable_difference(1.0, n, alpha, power)


@dataclass(frozen=True)
class PairedPower:
    """What a paired comparison over ``n`` seeds with paired sd ``sd`` can detect (two-sided ``alpha``, ``power``):
    its minimum detectable difference, the seeds the stated ``margin`` would need at this sd, and the sd at which
    the present seeds would detect the margin."""

    n: int
    sd: float
    margin: float
    mdd: float
    seeds_for_margin: int | None
    sd_for_margin: float

    def text(self) -> str:
        """``MDD 5.60 at 3 seeds (80% power, α = 0.05); a 2.00 difference needs 65 seeds at sd 5.60, or sd ≤ 0.52``."""
        seeds = (
            f"{self.seeds_for_margin} seeds" if self.seeds_for_margin is not None else f"more than {MAX_SEEDS} seeds"
        )
        return (f"minimum detectable difference {self.mdd:.2f} at {self.n} seeds ({POWER:.0%} power, two-sided "
                f"α = {ALPHA}, paired sd {self.sd:.2f}); a {self.margin:.2f} difference needs {seeds} at this sd, "
                f"or a paired sd ≤ {self.sd_for_margin:.2f} at {self.n} seeds")


def paired_power(sd: float | None, n: int, margin: float) -> PairedPower | None:
    """The power figures of a paired comparison (None with one seed: no sd)."""
    if sd is None or n < 2:
        return None
    return PairedPower(n, sd, margin, min_detectable_difference(sd, n), seeds_to_detect(sd, margin),
                       max_sd_to_detect(n, margin))
