"""The per-seed CSV of a study: one row per (arm, seed) with the primary metrics and Δm against both single-task
references, read back into the same table the report prints; the README's standard-study table equals the rendering
of the committed docs/standard-study.csv."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.results import ResultsError, RunResult, baseline_arm, group_runs, results_table, to_markdown
from taskbalance.results.seed_csv import read_seed_csv, render_seed_csv, seed_csv_text, write_seed_csv

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- standard-study-table:start -->", "<!-- standard-study-table:end -->"


def run(method, seed, semseg, depth, kind="mtl"):
    return RunResult(name=method, method=method, kind=kind, tasks=["semseg", "depth"],
                     metrics={"semseg": {"mIoU": semseg, "pixel_acc": 80.0}, "depth": {"rmse": depth}},
                     primary={"semseg": "mIoU", "depth": "rmse"}, higher_is_better={"semseg": True, "depth": False},
                     meta={"seed": seed})


STL = [run("stl", 0, 40.0, 0.5, "stl"), run("stl", 1, 50.0, 0.4, "stl")]
RUNS = [
    run("uniform", 0, 44.0, 0.55),
    run("uniform", 1, 50.0, 0.44),
    run("famo", 0, 45.0, 0.5),
    run("famo", 1, 47.0, 0.42),
]


def test_csv_has_a_row_per_arm_and_seed_with_both_deltas(tmp_path):
    text = seed_csv_text(group_runs(RUNS), baseline_arm(STL))
    lines = text.splitlines()
    assert lines[0] == "arm,seed,semseg.mIoU ↑,depth.rmse ↓,delta_m_mean,delta_m_per_seed"
    assert [line.split(",")[:2] for line in lines[1:]] == [["Single-task", "0"], ["Single-task", "1"], ["uniform", "0"],
                                                          ["uniform", "1"], ["famo", "0"], ["famo", "1"]]
    # uniform seed 0: against the mean (45, 0.45): (-1/45 - 0.1/0.45) * 50 = -12.222; against seed 0's (40, 0.5): 0
    uniform_0 = lines[3].split(",")
    assert float(uniform_0[4]) == pytest.approx(-110 / 9) and float(uniform_0[5]) == pytest.approx(0.0)
    path = write_seed_csv(tmp_path / "per_seed.csv", group_runs(RUNS), baseline_arm(STL))
    assert path.read_text() == text


def test_csv_renders_the_same_table_as_the_runs(tmp_path):
    path = write_seed_csv(tmp_path / "per_seed.csv", group_runs(RUNS), baseline_arm(STL))
    for mode in ("mean", "per-seed"):
        direct = to_markdown(results_table(group_runs(RUNS), baseline_arm(STL), baseline_mode=mode))
        assert render_seed_csv(path, mode) == direct
    arms, baseline = read_seed_csv(path)
    assert [a.name for a in arms] == ["uniform", "famo"] and baseline.seeds == (0, 1)
    result = CliRunner().invoke(app, ["results", "readme-table", str(path)])
    assert result.exit_code == 0 and result.output == render_seed_csv(path)


def test_malformed_csv_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("arm,seed,semseg mIoU\nuniform,0,1\n")
    with pytest.raises(ResultsError, match="expected columns arm, seed, <task>.<metric>"):
        read_seed_csv(bad)
    result = CliRunner().invoke(app, ["results", "readme-table", str(tmp_path / "missing.csv")])
    assert result.exit_code == 1 and "cannot read" in result.output


def test_readme_standard_study_table_is_the_rendering_of_the_committed_csv():
    csv = ROOT / "docs" / "standard-study.csv"
    if not csv.is_file():
        pytest.skip(
            "docs/standard-study.csv does not exist yet (the standard study's per-seed CSV is committed after "
            "its rerun); regenerate the README block with `taskbalance results readme-table docs/standard-study.csv`"
        )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), readme, flags=re.S)
    assert block is not None, f"README.md has no {START} ... {END} block"
    assert block.group(1).strip() == render_seed_csv(csv).strip()
