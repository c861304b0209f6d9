"""``study --plan`` says what running the study would do: a run trained under another config is marked stale,
naming the changed keys, not listed as finished."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.study import load_study, plan
from taskbalance.study.plan import expected_config
from taskbalance.training.config import dump_config


def test_plan_marks_stale_runs_with_the_changed_keys(tmp_path: Path):
    study, out = tmp_path / "study-tiny.yaml", tmp_path / "out"
    study.write_text("base: quick\nseeds: [0]\nsingle_task: false\nmethods:\n  - {name: rlw}\n"
                     "set:\n  optim.iterations: 30\n  tasks: [depth, normals]\n")
    runs = {run.name: run for run in plan(load_study(study))}
    spec = load_study(study)
    for name, iterations in (("uniform/seed-0", 30), ("rlw/seed-0", 300)):  # rlw was trained for 300 steps
        stored = expected_config(runs[name], spec, out).model_copy(deep=True)
        stored = stored.model_copy(update={"optim": stored.optim.model_copy(update={"iterations": iterations})})
        (out / name).mkdir(parents=True)
        (out / name / "config.yaml").write_text(dump_config(stored))
        (out / name / "results.json").write_text("{}")
    result = CliRunner().invoke(app, ["study", str(study), "--out", str(out), "--plan"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: " ".join(line.split()[2:]) for line in result.output.splitlines()}
    assert lines == {"uniform/seed-0": "finished", "rlw/seed-0": "stale: will retrain (changed: optim.iterations)"}


def test_changed_keys_shows_six_keys_then_an_ellipsis():
    from taskbalance.study.staleness import changed_keys

    assert changed_keys(["optim.lr"]) == "optim.lr"
    keys = [f"k{i}" for i in range(8)]
    assert changed_keys(keys) == "k0, k1, k2, k3, k4, k5 ..."
    assert changed_keys(keys[:6]) == "k0, k1, k2, k3, k4, k5"
