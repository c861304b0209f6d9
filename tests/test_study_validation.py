"""A study validates each run's config once: from the preset on the command line, through the plan, the stale-run
check, the scheduler and the executor, to the run's results and the report. Configs derived later (URL teachers,
the feature-distance measurement, the single-task baseline) are typed copies equal to a fresh validation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.study import load_study, plan
from taskbalance.study.plan import expected_config, stl_arm
from taskbalance.training.config import RunConfig, validate_config

TINY = {
    "optim.iterations": 2, "optim.eval_every": 2, "data.batch_size": 4, "data.eval_batch_size": 8,
    "data.options.num_scenes": 1, "data.options.views_per_scene": 4, "data.options.resolution": [24, 32],
    "diagnostics.every": 0, "tasks": ["depth", "normals"],
}


def _study_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "study-tiny.yaml"
    settings = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in TINY.items())
    path.write_text(f"description: tiny\nbase: quick\nseeds: [0]\nset:\n{settings}\n{extra}")
    return path


class CountingValidator:
    """Stands in for ``RunConfig.__pydantic_validator__``: every way of validating a RunConfig (``model_validate``,
    the constructor, ``validate_config``, ``load_config``) goes through it; counts the validations per run name."""

    def __init__(self, validator: Any) -> None:
        self.validator = validator
        self.names: Counter[str] = Counter()

    def validate_python(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        self.names[str(data.get("name", "run")) if isinstance(data, dict) else "?"] += 1
        return self.validator.validate_python(data, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.validator, name)


@pytest.fixture()
def counter(monkeypatch: pytest.MonkeyPatch) -> CountingValidator:
    counting = CountingValidator(RunConfig.__pydantic_validator__)
    monkeypatch.setattr(RunConfig, "__pydantic_validator__", counting)
    return counting


def test_the_counter_sees_every_way_of_validating(counter: CountingValidator):
    validate_config({"name": "a", "tasks": ["depth"]})
    RunConfig.model_validate({"name": "a", "tasks": ["depth"]})
    RunConfig(name="b", tasks=("depth",))
    assert counter.names == {"a": 2, "b": 1}


def test_a_study_from_the_command_line_validates_each_run_config_once(tmp_path: Path, counter: CountingValidator):
    study = _study_file(tmp_path, "grid:\n  - {depth: 1, normals: 2}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["study", str(study), "--out", str(out), "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    runs = ["stl-depth/seed-0", "stl-normals/seed-0", "uniform/seed-0", "grid-1/seed-0"]
    assert all((out / name / "results.json").is_file() for name in runs)
    assert (out / "report.md").is_file()
    assert counter.names == {name: 1 for name in runs}


@pytest.mark.parametrize("extra, kind", [("url: true\n", "url"), ("feature_distance: true\n", "mtl")])
def test_derived_configs_equal_a_fresh_validation(tmp_path: Path, extra: str, kind: str):
    spec = load_study(_study_file(tmp_path, extra))
    run = next(r for r in plan(spec) if r.kind == kind)
    baseline = {"depth": {"rmse": 1, "abs_rel": 0.5}, "normals": {"mean": 30}}  # ints, as a JSON record may hold
    derived = expected_config(run, spec, tmp_path, baseline)
    teachers = {t: str((tmp_path / stl_arm("", t) / "seed-0").resolve()) for t in run.config.tasks}
    mode = "distill" if kind == "url" else "measure"
    fresh = validate_config({**run.config.model_dump(mode="json"), "distill": {"mode": mode, "teachers": teachers},
                             "baseline": baseline})
    assert derived == fresh
    assert derived.model_dump(mode="json") == fresh.model_dump(mode="json")  # what config.yaml and the hashes see
    assert derived.baseline == {"depth": {"rmse": 1.0, "abs_rel": 0.5}, "normals": {"mean": 30.0}}
    assert json.dumps(derived.model_dump(mode="json")) == json.dumps(fresh.model_dump(mode="json"))  # 1.0, not 1
    stl = next(r for r in plan(spec) if r.kind == "stl")
    assert expected_config(stl, spec, tmp_path, baseline) is stl.config  # single-task runs train as planned
