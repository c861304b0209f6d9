"""Statistics over seeds against hand-computed values, grouping of runs into arms, per-seed Δm and the paired
comparison, row labels and comparability warnings."""

import math

import pytest
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.results import (
    ResultsError,
    RunResult,
    baseline_arm,
    comparability_warnings,
    group_runs,
    paired_difference,
    render_text,
    results_table,
    save_run_result,
    summarize,
)

# Student's t quantiles t_{0.975, df} from the table: df = 2, 3
T_2, T_3 = 4.302652729911275, 3.182446305284263


def test_summary_mean_sample_std_and_t_interval():
    # [1, 2, 3, 6]: mean 3; squared deviations 4 + 1 + 0 + 9 = 14; s^2 = 14 / 3
    s = summarize([1.0, 2.0, 3.0, 6.0])
    std = math.sqrt(14 / 3)
    assert (s.n, s.mean, s.std) == (4, 3.0, pytest.approx(std))
    half = T_3 * std / 2  # t * s / sqrt(4)
    assert (s.low, s.high) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert s.low == pytest.approx(-0.43743488, abs=1e-7) and not s.excludes_zero and s.contains(0.0)


def test_one_value_has_no_spread_and_no_interval():
    s = summarize([2.5])
    assert (s.n, s.mean, s.std, s.low, s.high) == (1, 2.5, None, None, None)
    assert not s.excludes_zero and not s.contains(2.5)


def test_paired_difference_uses_the_common_seeds():
    # differences on seeds 0, 1, 2: 0.5, 2.0, -0.5 (seed 3 only in b): mean 2/3, s^2 = (1/36 + 16/9 + 49/36) / 2
    d = paired_difference({0: 1.0, 1: 3.0, 2: 2.0}, {0: 0.5, 1: 1.0, 2: 2.5, 3: 9.0})
    std = math.sqrt((1 / 36 + 16 / 9 + 49 / 36) / 2)
    assert (d.n, d.mean, d.std) == (3, pytest.approx(2 / 3), pytest.approx(std))
    assert d.high - d.mean == pytest.approx(T_2 * std / math.sqrt(3))
    with pytest.raises(ResultsError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})
    with pytest.raises(ResultsError, match="non-finite"):
        summarize([1.0, math.nan])


def run(name, seed, method=None, kind="mtl", steps=400, options=None, **values):
    directions = {"semseg": ("mIoU", True), "depth": ("rmse", False)}
    return RunResult(
        name=name, method=method or ("stl" if kind == "stl" else name), kind=kind, tasks=list(values),
        metrics={t: {directions[t][0]: v} for t, v in values.items()},
        primary={t: directions[t][0] for t in values}, higher_is_better={t: directions[t][1] for t in values},
        meta={"seed": seed, "steps": steps, "method_options": options or {}, "dataset": "synthetic",
              "dataset_info": {"resolution": [48, 64], "seed": 0}},
    )


STL = [run("stl-semseg", s, kind="stl", semseg=v) for s, v in ((0, 40.0), (1, 50.0))] + \
      [run("stl-depth", s, kind="stl", depth=v) for s, v in ((0, 0.5), (1, 0.4))]


def test_runs_group_by_arm_and_seed_with_per_seed_delta_m():
    runs = [
        run("quick", 0, method="uniform", semseg=44.0, depth=0.55),
        run("quick", 1, method="uniform", semseg=50.0, depth=0.44),
        run("quick", 0, method="famo", options={"gamma": 0.01}, semseg=42.0, depth=0.5),
        run("quick", 2, method="famo", options={"gamma": 0.01}, semseg=45.0, depth=0.45),
        run("quick", 0, method="famo", options={"gamma": 0.001}, semseg=40.0, depth=0.5),
    ]
    arms = group_runs(runs)
    assert [(a.name, a.seeds) for a in arms] == [
        ("uniform", (0, 1)),
        ("famo (gamma=0.01)", (0, 2)),
        ("famo (gamma=0.001)", (0,)),
    ]
    table = results_table(arms, baseline_arm(STL), baseline_mode="per-seed")
    uniform, famo = table.row("uniform"), table.row("famo (gamma=0.01)")
    # uniform seed 0: M = (+10, -10) -> 0; seed 1 against seed 1's STL (50, 0.4): M = (0, -10) -> -5
    assert uniform.seed_delta_m == pytest.approx({0: 0.0, 1: -5.0})
    assert uniform.delta_m.mean == pytest.approx(-2.5) and uniform.delta_m.std == pytest.approx(math.sqrt(12.5))
    # famo seed 0: M = (+5, 0) -> 2.5; seed 2 has no STL run: against the STL mean (45, 0.45) -> M = (0, 0) -> 0
    assert famo.seed_delta_m == pytest.approx({0: 2.5, 2: 0.0})
    assert "1 of 5 runs have no single-task runs of their seed" in table.notes[0]
    # paired with uniform over the common seed 0 only: 2.5 - 0 (one seed: no interval, no marker)
    assert famo.versus_reference.n == 1 and famo.versus_reference.mean == pytest.approx(2.5)
    assert render_text(table, "markdown").splitlines()[4].endswith("| +2.50 |")
    assert table.rows[0].name == "Single-task" and table.rows[0].values[0].mean == pytest.approx(45.0)


def test_paired_marker_when_the_interval_excludes_zero():
    uniform = [run("u", s, method="uniform", semseg=40.0 + s, depth=0.5) for s in range(3)]
    better = [run("b", s, method="famo", semseg=44.0 + s + 0.1 * s * s, depth=0.5) for s in range(3)]
    stl = [run("s", s, kind="stl", semseg=40.0 + s, depth=0.5) for s in range(3)]
    table = results_table(group_runs(uniform + better), baseline_arm(stl))
    versus = table.row("famo").versus_reference
    assert versus.n == 3 and versus.excludes_zero and versus.low > 0
    line = next(row for row in render_text(table, "markdown").splitlines() if row.startswith("| famo"))
    assert line.endswith(" * |")
    markdown = render_text(table, "markdown").splitlines()
    assert "(reference)" in next(row for row in markdown if row.startswith("| uniform"))


def test_same_arm_and_seed_twice_is_refused():
    with pytest.raises(ResultsError, match="same config and seed 0"):
        group_runs([run("a", 0, method="uniform", semseg=1.0), run("b", 0, method="uniform", semseg=2.0)])


def test_labels_show_the_differing_config_and_warn_on_training_length():
    runs = [run("quick", 0, method="uniform", steps=30, semseg=1.0), run("quick", 0, method="famo", semseg=1.0)]
    assert [a.name for a in group_runs(runs)] == ["uniform (steps=30)", "famo (steps=400)"]
    warnings = comparability_warnings(runs)
    assert len(warnings) == 1 and "different training lengths" in warnings[0] and "30: quick; 400: quick" in warnings[0]
    other = run("x", 0, method="uniform", semseg=1.0).model_copy(
        update={"meta": {"dataset_info": {"resolution": [24, 32]}}}
    )
    assert any("different resolutions" in w for w in comparability_warnings([runs[1], other]))


def test_cli_table_groups_seeds_labels_rows_and_warns(tmp_path):
    for r in STL:
        save_run_result(r, tmp_path / "stl" / f"{r.name}-{r.meta['seed']}")
    runs = [run("quick", s, method="uniform", semseg=40.0 + 10 * s, depth=0.5 - 0.1 * s) for s in (0, 1)]
    runs += [run("quick", 0, method="famo", steps=30, semseg=41.0, depth=0.5)]
    for i, r in enumerate(runs):
        save_run_result(r, tmp_path / "runs" / f"run-{i}")
    result = CliRunner().invoke(app, ["results", "table", str(tmp_path / "runs"), "-b", str(tmp_path / "stl"),
                                      "-f", "markdown", "--baseline-mode", "per-seed"])
    assert result.exit_code == 0, result.output
    assert "| uniform (steps=400) | 2 | 45.00 ± 7.07 | 0.4500 ± 0.0707 | +0.00 ± 0.00 |" in result.output
    assert "| famo (steps=30) | 1 |" in result.output
    assert "different training lengths" in result.output


def test_cli_table_of_a_study_folder_takes_its_single_task_runs(tmp_path):
    study = tmp_path / "study"
    for r in STL:
        save_run_result(r, study / r.name / f"seed-{r.meta['seed']}")
    for s in (0, 1):
        save_run_result(
            run("uniform/seed", s, method="uniform", semseg=40.0 + 10 * s, depth=0.5 - 0.1 * s),
            study / "uniform" / f"seed-{s}",
        )
    # a run the study set aside as stale (same arm and seed) is not read
    save_run_result(
        run("uniform/seed", 0, method="uniform", semseg=1.0, depth=1.0), study / "uniform" / "seed-0.stale-abc"
    )
    result = CliRunner().invoke(app, ["results", "table", str(study), "-f", "markdown", "--baseline-mode", "per-seed"])
    assert result.exit_code == 0, result.output
    assert "| Single-task | 2 | 45.00 ± 7.07 | 0.4500 ± 0.0707 |" in result.output
    assert "| uniform | 2 | 45.00 ± 7.07 | 0.4500 ± 0.0707 | +0.00 ± 0.00 |" in result.output
    lone = CliRunner().invoke(app, ["results", "table", str(study / "uniform")])
    assert lone.exit_code == 1 and "no single-task run among the runs" in lone.output


def test_arms_that_differ_only_in_unlisted_config_are_told_apart_by_their_arm_hash():
    lr_a = run("a", 0, method="uniform", semseg=1.0)
    lr_b = run("b", 0, method="uniform", semseg=2.0)
    lr_a = lr_a.model_copy(update={"meta": {**lr_a.meta, "arm_sha256": "aaaaaaaa1111"}})
    lr_b = lr_b.model_copy(update={"meta": {**lr_b.meta, "arm_sha256": "bbbbbbbb2222"}})
    seed_1 = run("c", 1, method="uniform", semseg=3.0).model_copy(update={"meta": {**lr_a.meta, "seed": 1}})
    arms = group_runs([lr_a, lr_b, seed_1])
    assert [(a.name, a.seeds) for a in arms] == [
        ("uniform [config aaaaaaaa]", (0, 1)),
        ("uniform [config bbbbbbbb]", (0,)),
    ]


def test_a_seed_with_incomplete_single_task_runs_uses_the_single_task_mean():
    stl = STL + [run("stl-semseg", 2, kind="stl", semseg=60.0)]  # seed 2 has no depth run
    arms = group_runs([run("quick", 2, method="uniform", semseg=45.0, depth=0.45)])
    table = results_table(arms, baseline_arm(stl), baseline_mode="per-seed")
    assert table.rows[0].n == 2 and table.row("uniform").seed_delta_m == pytest.approx({2: 0.0})
    assert "1 of 1 runs have no single-task runs of their seed" in table.notes[0]


def test_mean_baseline_takes_every_run_against_the_single_task_mean_over_seeds():
    # STL mean over seeds 0, 1: semseg 45, depth 0.45. uniform seed 0 (44, 0.55): M = (44-45)/45*100 = -2.222,
    # (0.45-0.55)/0.45*100 = -22.222 -> Δm -12.222; seed 1 (50, 0.44): M = +11.111, +2.222 -> Δm +6.667
    runs = [
        run("quick", 0, method="uniform", semseg=44.0, depth=0.55),
        run("quick", 1, method="uniform", semseg=50.0, depth=0.44),
    ]
    table = results_table(group_runs(runs), baseline_arm(STL))
    assert table.baseline_mode == "mean" and "against the mean over seeds of the single-task runs" in table.notes[0]
    assert table.row("uniform").seed_delta_m == pytest.approx({0: -110 / 9, 1: 60 / 9})
    # the baseline row against its own mean: per-seed Δm ±(50/45 - 1)*100/2 ... mean exactly 0, spread > 0
    base = table.rows[0]
    assert base.delta_m.mean == pytest.approx(0.0) and base.delta_m.std > 0
    assert base.seed_delta_m[0] == pytest.approx(((40 - 45) / 45 + (0.45 - 0.5) / 0.45) * 50)
    with pytest.raises(ResultsError, match="unknown baseline mode 'median'"):
        results_table(group_runs(runs), baseline_arm(STL), baseline_mode="median")


def test_t_test_p_and_holm_against_hand_values():
    from taskbalance.results.stats import holm, interval_at, t_test_p

    # [1, 2, 3, 6]: mean 3, s = sqrt(14/3), t = 3 / (s / 2) = 2.7775; two-sided p with 3 df (scipy-free check below)
    s = summarize([1.0, 2.0, 3.0, 6.0])
    t = 3 / (math.sqrt(14 / 3) / 2)
    from scipy import stats

    assert t_test_p(s) == pytest.approx(2 * stats.t.sf(t, 3))
    assert 0.05 < t_test_p(s) < 0.1  # t = 2.78 lies between t_{0.95,3} = 2.353 and t_{0.975,3} = 3.182
    assert t_test_p(summarize([2.0, 2.0])) == 0.0 and t_test_p(summarize([0.0, 0.0])) == 1.0
    assert t_test_p(summarize([1.0])) is None
    # Holm: sorted 0.01, 0.02, 0.04 -> 3 * 0.01 = 0.03, max(0.03, 2 * 0.02) = 0.04, max(0.04, 1 * 0.04) = 0.04
    assert holm({"a": 0.04, "b": 0.01, "c": 0.02, "d": None}) == pytest.approx(
        {"a": 0.04, "b": 0.03, "c": 0.04, "d": None}
    )
    assert holm({"a": 0.5, "b": 0.9}) == pytest.approx({"a": 1.0, "b": 1.0})
    low, high = interval_at(s, 0.90)
    assert low == pytest.approx(3 - 2.353363434801823 * math.sqrt(14 / 3) / 2) and high == pytest.approx(6 - low)


def test_star_against_uniform_is_holm_corrected_across_arms():
    # uniform Δm 0 on every seed (semseg 40 + s against STL 40 + s, per seed); two arms with the same paired
    # differences +1, +2, +3 (p = 0.0742 > 0.05 alone) and one with +3.0, +3.1, +3.2 (p ≈ 0.0004): only the last
    # keeps its star after Holm; an arm with +1, +1.1, +1.2 (p = 0.0016) is significant alone and after Holm (x3)
    stl = [run("s", s, kind="stl", semseg=40.0 + s, depth=0.5) for s in range(3)]
    uniform = [run("u", s, method="uniform", semseg=40.0 + s, depth=0.5) for s in range(3)]

    def arm(method, deltas):  # Δm = M_seg / 2 -> semseg = (40 + s) * (1 + 2 * Δm / 100)
        return [
            run(method, s, method=method, semseg=(40.0 + s) * (1 + 2 * d / 100), depth=0.5)
            for s, d in enumerate(deltas)
        ]

    runs = uniform + arm("famo", [1, 2, 3]) + arm("uw", [3.0, 3.1, 3.2]) + arm("mgda", [1.0, 1.1, 1.2])
    table = results_table(group_runs(runs), baseline_arm(stl), baseline_mode="per-seed")
    famo, uw, mgda = table.row("famo"), table.row("uw"), table.row("mgda")
    assert famo.versus_p == pytest.approx(0.0742, abs=1e-4) and not famo.versus_significant
    assert uw.versus_p_holm == pytest.approx(3 * uw.versus_p) and uw.versus_significant
    assert mgda.versus_p_holm == pytest.approx(2 * mgda.versus_p) and mgda.versus_significant
    markdown = render_text(table, "markdown")
    assert next(row for row in markdown.splitlines() if row.startswith("| uw")).endswith(" * |")
    assert not next(row for row in markdown.splitlines() if row.startswith("| famo")).endswith(" * |")
    assert "after Holm's correction across the 3 arms compared with uniform" in markdown


def test_summary_json_gives_every_field_of_a_summary_and_none_for_none():
    from taskbalance.results.stats import summary_json

    summary = summarize([1.0, 2.0, 3.0])
    assert summary_json(summary) == {"n": 3, "mean": 2.0, "std": 1.0, "low": summary.low, "high": summary.high}
    assert summary.low is not None and summary.low < 2.0 < summary.high
    assert summary_json(None) is None
