"""End to end on tiny synthetic scenes: a study trains STL, uniform, grid, a method and URL, writes the report,
and a second invocation re-runs nothing. Also the `train` / `study` commands' errors."""

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.results import load_run_result
from taskbalance.study import load_study, plan, run_study

TINY = {
    "optim.iterations": 4, "optim.eval_every": 2, "data.batch_size": 4, "data.eval_batch_size": 8,
    "data.options.num_scenes": 1, "data.options.views_per_scene": 4, "data.options.resolution": [24, 32],
    "diagnostics.every": 2,
}


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study-tiny.yaml"
    settings = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in TINY.items())
    path.write_text(f"""description: tiny study
base: quick
set:
{settings}
grid:
  - {{semseg: 1, depth: 1, normals: 2, edge: 10}}
  - {{semseg: 2, depth: 1, normals: 1, edge: 1}}
methods:
  - {{name: avgnorm}}
url: true
feature_distance: true
diagnostics_runs: [uniform, avgnorm]
""")
    return path


@pytest.mark.slow
def test_study_end_to_end_and_restart(tmp_path: Path):
    spec = load_study(_study_file(tmp_path))
    out = tmp_path / "study"
    console = Console(record=True, width=200)
    report = run_study(spec, out, console=console, show_progress=False)
    names = [r.name for r in plan(spec)]
    arms = ["stl-semseg", "stl-depth", "stl-normals", "stl-edge", "uniform", "grid-1", "grid-2", "avgnorm", "url"]
    assert names == [f"{arm}/seed-0" for arm in arms]
    for name in names:
        assert (out / name / "results.json").is_file()
    rows = [row["name"] for row in report["rows"]]
    assert rows == ["Single-task", "uniform", "grid search", "avgnorm", "url"]
    assert report["rows"][0]["delta_m"] == 0.0
    # MTL runs select on validation Δm against the STL runs' validation metrics
    uniform = load_run_result(out / "uniform/seed-0")
    assert uniform.selection == "val" and uniform.mean_weights == {t: 1.0 for t in uniform.tasks}
    config = (out / "uniform/seed-0" / "config.yaml").read_text()
    assert "baseline:" in config and "mode: measure" in config
    assert load_run_result(out / "url/seed-0").method == "url"
    assert json.loads((out / "avgnorm/seed-0" / "imbalance.json").read_text())["steps"] == 2
    diagnostics = [json.loads(line) for line in (out / "uniform/seed-0" / "diagnostics.jsonl").read_text().splitlines()]
    assert set(diagnostics[0]["feature_distance"]) == set(uniform.tasks)
    for name in (
        "report.md",
        "table.csv",
        "table.tex",
        "radar.png",
        "figures/cos_to_update.png",
        "figures/feature_distance.png",
    ):
        assert (out / name).is_file(), name
    text = (out / "report.md").read_text()
    assert "Mean loss weights" in text and "grid search" in text and "uniform" in text
    assert "below single-task" in console.export_text() or "at or above single-task" in console.export_text()

    stamps = {n: (out / n / "results.json").stat().st_mtime_ns for n in names}
    again = Console(record=True, width=200)
    run_study(spec, out, console=again, show_progress=False)
    assert f"{len(names)} runs ({len(names)} finished, 0 to run)" in again.export_text()
    assert stamps == {n: (out / n / "results.json").stat().st_mtime_ns for n in names}


def test_train_command_names_bad_key(tmp_path: Path):
    result = CliRunner().invoke(app, ["train", "quick", "--set", "optim.lrr=1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "optim.lrr" in result.output and "unknown key" in result.output
    assert not (tmp_path / "r").exists()


def test_train_list_and_study_plan(tmp_path: Path):
    runner = CliRunner()
    listed = runner.invoke(app, ["train", "--list"])
    assert listed.exit_code == 0 and "nyud-resnet18" in listed.output
    missing = runner.invoke(app, ["train"])
    assert missing.exit_code == 2 and "--list" in missing.output
    planned = runner.invoke(app, ["study", "quick", "--plan", "--out", str(tmp_path)])
    assert planned.exit_code == 0
    assert "stl-semseg" in planned.output and "to do" in planned.output


def test_unknown_balancer_option_is_reported(tmp_path: Path):
    settings = [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]
    result = CliRunner().invoke(app, ["train", "quick", *settings, "--set", "method.name=avgnorm",
                                      "--set", "method.options.bogus=1", "--out", str(tmp_path / "r"), "--no-progress"])
    assert result.exit_code == 1 and "bogus" in result.output
