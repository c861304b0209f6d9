"""Reproducible numbers: a run's torch thread count is part of its config (stored resolved, hashed, recorded in
results.json with the torch version); a study fixes it for every run, so ``--jobs`` changes the wall time only, and
a study run's own config.yaml retrained with ``taskbalance train`` gives the study's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.results import load_run_result
from taskbalance.study import load_study, plan
from taskbalance.training.config import config_hash, validate_config
from taskbalance.training.trainer import train

TINY = {
    "optim.iterations": 4, "optim.eval_every": 2, "data.batch_size": 4, "data.eval_batch_size": 8,
    "data.options.num_scenes": 1, "data.options.views_per_scene": 4, "data.options.resolution": [24, 32],
    "diagnostics.every": 2, "tasks": ["depth", "normals"],
}
RUNS = ["stl-depth/seed-0", "stl-normals/seed-0", "uniform/seed-0", "avgnorm/seed-0"]


def _study_file(tmp_path: Path, threads: int | None) -> Path:
    settings = {**TINY, **({"threads": threads} if threads is not None else {})}
    body = "\n".join(f"  {key}: {json.dumps(value)}" for key, value in settings.items())
    path = tmp_path / "study-repro.yaml"
    path.write_text(f"description: repro\nbase: quick\nseeds: [0]\nset:\n{body}\nmethods:\n  - {{name: avgnorm}}\n")
    return path


def _study(tmp_path: Path, study: Path, out: str, jobs: int) -> Path:
    result = CliRunner().invoke(app, ["study", str(study), "--out", str(tmp_path / out), "--jobs", str(jobs),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    return tmp_path / out


def test_a_study_fixes_the_thread_count_of_every_run(tmp_path: Path):
    assert {run.config.threads for run in plan(load_study(_study_file(tmp_path, None)))} == {1}
    assert {run.config.threads for run in plan(load_study(_study_file(tmp_path, 3)))} == {3}
    assert {run.config.threads for run in plan(load_study(_study_file(tmp_path, None), overrides=["threads=2"]))} == {2}


def test_the_thread_count_is_hashed():
    base = {"tasks": ["depth"], "optim": {"iterations": 10}}
    assert config_hash(validate_config({**base, "threads": 1})) != config_hash(validate_config({**base, "threads": 2}))


def test_a_run_states_its_actual_thread_count(tmp_path: Path):
    raw = {"name": "t", "tasks": ["depth"], "seed": 0, "device": "cpu", "threads": None, **{
        "data": {"augment": False, "batch_size": 4, "eval_batch_size": 8,
                 "options": {"num_scenes": 1, "views_per_scene": 4, "resolution": [24, 32]}},
        "model": {"arch": "vanilla", "backbone": "tiny"}, "optim": {"iterations": 2, "eval_every": 2},
        "evaluation": {"exact_edge": False}}}
    before = torch.get_num_threads()
    try:
        result = train(validate_config(raw), tmp_path / "run", show_progress=False)
    finally:
        torch.set_num_threads(before)
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["threads"] == before and result is not None
    assert result.meta["threads"] == before and result.meta["torch"] == torch.__version__
    assert result.meta["config_sha256"] == config_hash(validate_config({**raw, "threads": before}))
    # a run stored before runs stated their count (threads: null) still resumes
    config_file = tmp_path / "run" / "config.yaml"
    config_file.write_text(config_file.read_text().replace(f"threads: {before}\n", "threads: null\n"))
    assert yaml.safe_load(config_file.read_text())["threads"] is None
    assert train(validate_config(raw), tmp_path / "run", resume=True, show_progress=False).metrics == result.metrics


@pytest.mark.slow
def test_jobs_change_no_number_and_config_yaml_reproduces_a_run(tmp_path: Path):
    # two threads per run: without the fix, --jobs 1 gave each run cores // 1 threads and --jobs 2 cores // 2
    study = _study_file(tmp_path, 2)
    one, two = _study(tmp_path, study, "jobs-1", 1), _study(tmp_path, study, "jobs-2", 2)
    for name in RUNS:
        a, b = load_run_result(one / name / "results.json"), load_run_result(two / name / "results.json")
        assert a.metrics == b.metrics, name
        assert a.meta["threads"] == b.meta["threads"] == 2 and a.meta["config_sha256"] == b.meta["config_sha256"]
    # the MTL run's config.yaml carries its seed, threads and single-task baseline: `train` reproduces it
    retrain = CliRunner().invoke(app, ["train", str(two / "avgnorm/seed-0" / "config.yaml"), "--out",
                                       str(tmp_path / "retrained"), "--no-progress"])
    assert retrain.exit_code == 0, retrain.output
    again = load_run_result(tmp_path / "retrained" / "results.json")
    study_run = load_run_result(two / "avgnorm/seed-0" / "results.json")
    assert again.metrics == study_run.metrics and again.meta["best_step"] == study_run.meta["best_step"]
