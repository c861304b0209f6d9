"""Power of the paired t-test against textbook values (G*Power's one-sample / paired t: d = 0.5 needs 34 pairs,
d = 0.8 needs 15, two-sided α = 0.05, 80% power), the issue's estimate (paired sd 5.6, 2 points: about 65 seeds),
and the equivalence test's power by simulation."""

import math

import numpy as np
import pytest

from taskbalance.results import ResultsError
from taskbalance.results.power import (
    detection_power,
    equivalence_power,
    max_sd_for_equivalence,
    max_sd_to_detect,
    min_detectable_difference,
    paired_power,
    seeds_for_equivalence,
    seeds_to_detect,
)


def test_seeds_to_detect_matches_gpower_tables_and_the_issue():
    assert seeds_to_detect(1.0, 0.5) == 34 and seeds_to_detect(1.0, 0.8) == 15
    assert seeds_to_detect(2.0, 1.6) == 15  # only the ratio matters
    # normal approximation with Guenther's correction: ((1.96 + 0.84) * 5.6 / 2)^2 + 1.96^2 / 2 = 63.4
    assert seeds_to_detect(5.6, 2.0) == 64


def test_min_detectable_difference_is_where_the_power_reaches_80_percent():
    mdd = min_detectable_difference(5.6, 3)
    assert detection_power(mdd, 5.6, 3) == pytest.approx(0.8, abs=1e-6)
    # far above the z-approximation (2.80 * 5.6 / √3 = 9.05) at 2 degrees of freedom, close to it at 100 seeds
    assert mdd > 9.05 and min_detectable_difference(5.6, 100) == pytest.approx(2.80 * 5.6 / 10, rel=0.02)
    assert max_sd_to_detect(3, mdd) == pytest.approx(5.6)
    assert min_detectable_difference(0.0, 3) == 0.0 and detection_power(0.0, 1.0, 10) == pytest.approx(0.05)
    with pytest.raises(ResultsError, match="at least 2 seeds"):
        min_detectable_difference(1.0, 1)


def test_equivalence_power_agrees_with_a_simulated_tost():
    rng = np.random.default_rng(1)
    from scipy import stats

    n, sd, margin = 8, 1.0, 1.0
    diffs = rng.normal(0.0, sd, size=(20000, n))
    mean, s = diffs.mean(axis=1), diffs.std(axis=1, ddof=1)
    half = stats.t.ppf(0.95, n - 1) * s / math.sqrt(n)
    simulated = np.mean((mean - half > -margin) & (mean + half < margin))
    # the Bonferroni bound is a lower bound, close where the power is high
    approx = equivalence_power(sd, n, margin)
    assert approx <= simulated + 0.01 and simulated - approx < 0.08
    needed = seeds_for_equivalence(sd, margin)
    assert equivalence_power(sd, needed, margin) >= 0.8 > equivalence_power(sd, needed - 1, margin)
    assert equivalence_power(max_sd_for_equivalence(needed, margin), needed, margin) == pytest.approx(0.8)


def test_paired_power_text_states_mdd_and_needed_seeds():
    power = paired_power(5.6, 3, 2.0)
    assert power.seeds_for_margin == 64 and power.sd_for_margin == pytest.approx(
        2.0 / min_detectable_difference(1.0, 3)
    )
    assert power.text().startswith(
        f"minimum detectable difference {min_detectable_difference(5.6, 3):.2f} at 3 seeds "
        "(80% power, two-sided α = 0.05"
    )
    assert "a 2.00 difference needs 64 seeds at this sd" in power.text()
    assert paired_power(None, 1, 2.0) is None
