"""The paper's claims judged from intervals, on constructed per-seed results (one STL baseline per seed:
semseg mIoU 40, depth RMSE 0.5, so M_seg = (mIoU - 40) / 40 * 100 and M_dep = (0.5 - RMSE) / 0.5 * 100)."""

from taskbalance.results import RunResult, baseline_arm, group_runs, results_table
from taskbalance.results.verdicts import avgnorm_near_grid, best_arm, judge_claims, uniform_leaves_tasks_behind


def run(method, seed, semseg, depth=0.5, kind="mtl"):
    return RunResult(name=method, method=method, kind=kind, tasks=["semseg", "depth"],
                     metrics={"semseg": {"mIoU": semseg}, "depth": {"rmse": depth}},
                     primary={"semseg": "mIoU", "depth": "rmse"}, higher_is_better={"semseg": True, "depth": False},
                     meta={"seed": seed})


def arm(method, semseg, depth=None):
    depth = depth or [0.5] * len(semseg)
    return [run(method, s, v, d) for s, (v, d) in enumerate(zip(semseg, depth))]


def table(*runs, seeds=3):
    stl = [run("stl", s, 40.0, kind="stl") for s in range(seeds)]
    return results_table(group_runs([r for group in runs for r in group]), baseline_arm(stl))


def test_a_supported_names_the_task_significantly_below():
    # M_seg = -10, -9, -11 (interval below 0); M_dep = 0, +2, -2 (interval contains 0)
    t = table(arm("uniform", [36.0, 36.4, 35.6], [0.5, 0.49, 0.51]))
    verdict = uniform_leaves_tasks_behind(t)
    assert verdict.status == "supported" and verdict.n == 3
    assert verdict.evidence.startswith("Significantly below single-task: Seg.; M_i under uniform weights: Seg. -10.00%")
    assert "supported at 3 seeds" in verdict.text()


def test_a_not_supported_when_every_task_is_above():
    # M_seg = 2.5, 5, 3.75 and M_dep = 10, 12, 8: every interval above 0
    t = table(arm("uniform", [41.0, 42.0, 41.5], [0.45, 0.44, 0.46]))
    assert uniform_leaves_tasks_behind(t).status == "not supported"


def test_a_inconclusive_when_an_interval_straddles_zero():
    t = table(arm("uniform", [39.0, 41.0, 40.0]))
    assert uniform_leaves_tasks_behind(t).status == "inconclusive"


GRID = [44.0, 44.4, 43.6]  # Δm = (10 + 0) / 2 ... per seed: M_seg = 10, 11, 9; M_dep = 0 -> Δm = 5, 5.5, 4.5


def test_b_supported_within_the_grid_interval():
    # AvgNorm M_seg = 12, 8, 10 -> Δm 6, 4, 5: mean 5, inside the grid's interval 5 ± 4.30 * 0.5 / sqrt(3)
    t = table(arm("grid search", GRID), arm("avgnorm", [44.8, 43.2, 44.0]))
    verdict = avgnorm_near_grid(t, grid_choice="best mean validation Δm")
    assert verdict.status == "supported" and "within the grid's 95% t-interval" in verdict.evidence
    assert "best mean validation Δm" in verdict.evidence and "+0.00 Δm-points from the grid" in verdict.evidence


def test_b_not_supported_far_below_with_a_clear_paired_difference():
    # AvgNorm M_seg = 0, 2, -2 -> Δm 0, 1, -1; paired differences -5, -4.5, -5.5 (interval below 0)
    t = table(arm("grid search", GRID), arm("avgnorm", [40.0, 40.8, 39.2]))
    verdict = avgnorm_near_grid(t)
    assert verdict.status == "not supported" and "-5.00 Δm-points from the grid" in verdict.evidence


def test_b_needs_intervals_narrower_than_the_grids_gain_over_uniform():
    # uniform M_seg = -20 on every seed -> Δm -10: the grid gains 15 Δm-points; the paired half-width 3.29 is smaller
    within = [44.8, 43.2, 44.0]
    t = table(arm("uniform", [32.0, 32.0, 32.0]), arm("grid search", GRID), arm("avgnorm", within))
    verdict = avgnorm_near_grid(t)
    assert verdict.status == "supported" and "half-width 3.29 is smaller than the grid's gain over uniform (+15.00" in verdict.evidence
    # uniform Δm 4, 4.5, 3.5: the grid gains 1 point, less than the paired half-width: too wide to call AvgNorm close
    t = table(arm("uniform", [43.2, 43.6, 42.8]), arm("grid search", GRID), arm("avgnorm", within))
    verdict = avgnorm_near_grid(t)
    assert verdict.status == "inconclusive" and "too wide to call it close" in verdict.evidence


def test_b_inconclusive_below_but_noisy():
    # AvgNorm Δm 0, 10, -2.5: mean 2.5 is below the grid interval, paired differences -5, 4.5, -7 straddle 0
    t = table(arm("grid search", GRID), arm("avgnorm", [40.0, 48.0, 38.0]))
    assert avgnorm_near_grid(t).status == "inconclusive"


def test_c_best_separable_or_not():
    clear = table(arm("grid search", GRID), arm("famo", [48.0, 48.8, 47.6]))  # Δm 10, 11, 9.5: +5 on every seed
    verdict = best_arm(clear)
    assert verdict.status == "supported" and verdict.claim.startswith("(c) famo is the best arm")
    close = table(arm("grid search", GRID), arm("famo", [44.4, 43.6, 44.4]))  # Δm 5.5, 4.5, 5.5 vs 5, 5.5, 4.5
    verdict = best_arm(close)
    assert verdict.status == "inconclusive" and "Not separable from the runner-up" in verdict.evidence


def test_one_seed_is_inconclusive_everywhere_and_says_why():
    t = table(arm("uniform", [30.0]), arm("grid search", [44.0]), arm("avgnorm", [20.0]), seeds=1)
    verdicts = judge_claims(t)
    assert [v.status for v in verdicts] == ["inconclusive"] * 3
    assert all("one seed cannot separate the arms" in v.evidence and "at 1 seed**" in v.text() for v in verdicts)


def test_claims_without_their_arms_are_left_out():
    t = table(arm("famo", [41.0, 42.0, 43.0]))
    assert judge_claims(t) == []
