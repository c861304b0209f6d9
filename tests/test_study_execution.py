"""The study's seeds, stale-run detection, scheduler and executors (local processes, submitit), on tiny runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import processes
from taskbalance.cli.main import app
from taskbalance.results import load_run_result
from taskbalance.study import load_study, plan
from taskbalance.study.executors import ClusterOptions, RunOutcome, RunTask, build_backend, thread_budget
from taskbalance.study.schedule import execute
from taskbalance.training import ConfigError, load_config
from taskbalance.training.config import config_hash, validate_config

TINY = {
    "optim.iterations": 2, "optim.eval_every": 2, "data.batch_size": 4, "data.eval_batch_size": 8,
    "data.options.num_scenes": 1, "data.options.views_per_scene": 4, "data.options.resolution": [24, 32],
    "diagnostics.every": 0, "tasks": ["depth", "normals"],
}


def _study_file(tmp_path: Path, methods: str = "", seeds: Sequence[int] = (0,)) -> Path:
    path = tmp_path / "study-tiny.yaml"
    settings = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in TINY.items())
    path.write_text(f"description: tiny\nbase: quick\nseeds: {list(seeds)}\nset:\n{settings}\n{methods}")
    return path


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["study", *args, "--no-progress"])
    return result.exit_code, " ".join(result.output.split())  # the console wraps long lines


def test_plan_runs_every_arm_once_per_seed(tmp_path: Path):
    spec = load_study(_study_file(tmp_path, "grid:\n  - {depth: 1, normals: 2}\nmethods:\n  - {name: rlw}\n"), seeds=2)
    runs = plan(spec)
    assert [r.name for r in runs] == [
        "stl-depth/seed-0", "stl-normals/seed-0", "stl-depth/seed-1", "stl-normals/seed-1",
        "uniform/seed-0", "grid-1/seed-0", "rlw/seed-0", "uniform/seed-1", "grid-1/seed-1", "rlw/seed-1"]
    for run in runs:
        assert run.config.seed == run.seed and run.config.threads == 1  # the quick preset's
        assert run.needs == (
            () if run.kind == "stl" else (f"stl-depth/seed-{run.seed}", f"stl-normals/seed-{run.seed}")
        )
    assert {r.arm for r in runs if r.seed == 1} == {r.arm for r in runs if r.seed == 0}


def test_seed_errors_are_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="--seeds must be at least 1"):
        load_study(_study_file(tmp_path), seeds=0)
    with pytest.raises(ConfigError, match="seeds must be distinct"):
        load_study(_study_file(tmp_path, seeds=(1, 1)))


def test_randomised_method_and_augmentation_follow_the_run_seed():
    from taskbalance.models import build_model
    from taskbalance.training.components import build_balancer, build_split

    model = build_model(arch="vanilla", backbone="tiny", task_channels={"depth": 1, "normals": 3})
    for seed in (0, 3):
        config = validate_config({"tasks": ["depth", "normals"], "seed": seed, "method": {"name": "rlw"},
                                  "data": {"options": {"num_scenes": 1, "views_per_scene": 2, "resolution": [24, 32]}}})
        assert build_balancer(config, model).options.seed == seed
        assert build_split(config, "train", train=True)._rng.seed == seed  # type: ignore[attr-defined]


def test_config_hash_ignores_execution_settings_only():
    base = {"tasks": ["depth"], "optim": {"iterations": 10}}
    a = validate_config({**base, "data": {"num_workers": 2}})
    assert config_hash(a) == config_hash(validate_config({**base, "distributed": {"bucket_mb": 5}}))
    assert config_hash(a) != config_hash(validate_config({**base, "optim": {"iterations": 30}}))
    assert len(config_hash(a)) == 64


@pytest.mark.slow
def test_adding_a_seed_runs_one_more_per_arm_and_stale_runs_are_set_aside(tmp_path: Path):
    study, out = _study_file(tmp_path), tmp_path / "out"
    code, text = _cli(str(study), "--out", str(out), "--seeds", "2", "--set", "optim.iterations=4")
    assert code == 0, text
    assert "6 runs (0 finished, 6 to run)" in text
    meta = load_run_result(out / "uniform/seed-1").meta
    stored = load_config(out / "uniform/seed-1/config.yaml")
    assert meta["seed"] == stored.seed == 1 and meta["steps"] == 4
    assert meta["config_sha256"] == config_hash(stored)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/results.json")}

    code, text = _cli(str(study), "--out", str(out), "--seeds", "3", "--set", "optim.iterations=4")
    assert code == 0, text
    assert "9 runs (6 finished, 3 to run)" in text
    assert sorted(p.parent.name for p in out.glob("*/seed-*/results.json") if p not in stamps) == ["seed-2"] * 3
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())

    # the same study without the override: the 4-step runs are not reused, but moved aside and trained anew
    code, text = _cli(str(study), "--out", str(out), "--seeds", "1")
    assert code == 0, text
    assert text.count("trained under another config (optim.iterations)") == 3
    assert "3 runs (0 finished, 3 to run)" in text
    assert load_run_result(out / "uniform/seed-0").meta["steps"] == 2
    aside = sorted(out.glob("uniform/seed-0.stale-*"))
    assert len(aside) == 1 and load_run_result(aside[0]).meta["steps"] == 4

    # a report of the 4-step study leaves the (now 2-step) seed-0 runs out, trains and moves nothing
    code, text = _cli(str(study), "--out", str(out), "--seeds", "2", "--set", "optim.iterations=4", "--report-only")
    assert code == 0, text
    assert (
        text.count("left out of the report") == 3 and "6 runs" not in text and "3 runs (3 finished, 0 to run)" in text
    )
    assert load_run_result(out / "uniform/seed-0").meta["steps"] == 2
    assert "| uniform | 1 |" in (out / "report.md").read_text()


class _Job:
    """A handle whose result is known in advance (or whose job died)."""

    def __init__(self, outcome: RunOutcome | Exception) -> None:
        self.outcome = outcome

    def done(self) -> bool:
        return True

    def result(self) -> RunOutcome:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class _FakeBackend:
    """Finishes runs by writing a results.json, except the ones listed as failing or killed; records the order."""

    name, capacity, poll_seconds = "fake", 2, 0.0

    def __init__(self, failing: set[str], killed: set[str]) -> None:
        self.failing, self.killed, self.submitted = failing, killed, []

    def submit(self, tasks: Sequence[RunTask]) -> list[_Job]:
        jobs = []
        for task in tasks:
            self.submitted.append(task.name)
            if task.name in self.killed:
                jobs.append(_Job(RuntimeError("job 42 was killed (CANCELLED)")))
            elif task.name in self.failing:
                jobs.append(_Job(RunOutcome(task.name, 1.0, "TrainingDiverged: loss is nan")))
            else:
                Path(task.root).mkdir(parents=True)
                (Path(task.root) / "results.json").write_text("{}")
                jobs.append(_Job(RunOutcome(task.name, 1.0)))
        return jobs

    def close(self) -> None:
        return None


def test_scheduler_runs_single_task_first_and_reports_failures_by_name(tmp_path: Path):
    spec = load_study(_study_file(tmp_path, "methods:\n  - {name: rlw}\n"), seeds=2)
    backend = _FakeBackend(failing={"stl-depth/seed-1"}, killed={"rlw/seed-0"})
    console = Console(record=True, width=300)
    state = execute(spec, plan(spec), tmp_path / "out", backend, console, show_bar=False)
    # seed by seed, each run after the single-task runs it needs; seed 1's MTL runs need the failed stl-depth/seed-1
    assert backend.submitted == ["stl-depth/seed-0", "stl-normals/seed-0", "uniform/seed-0", "rlw/seed-0",
                                 "stl-depth/seed-1", "stl-normals/seed-1"]
    assert state.failed == {
        "stl-depth/seed-1": "TrainingDiverged: loss is nan",
        "rlw/seed-0": "job ended without a result (RuntimeError: job 42 was killed (CANCELLED))",
        "uniform/seed-1": "not run: stl-depth/seed-1 failed",
        "rlw/seed-1": "not run: stl-depth/seed-1 failed",
    }
    assert sorted(o.name for o in state.done) == [
        "stl-depth/seed-0",
        "stl-normals/seed-0",
        "stl-normals/seed-1",
        "uniform/seed-0",
    ]
    assert "FAILED rlw/seed-0" in console.export_text()


def test_backends_by_name_and_their_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert thread_budget(2, cores=2) == 1 and thread_budget(1, cores=2) == 2 and thread_budget(4, cores=2) == 1
    with pytest.raises(ValueError, match="unknown executor 'pbs'"):
        build_backend("pbs")
    local = build_backend("local", 2)
    assert local.capacity == 2
    local.close()
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(RuntimeError, match=r"pip install taskbalance\[cluster\]"):
        build_backend("slurm", cluster=ClusterOptions(tmp_path))


def test_sbatch_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    submitit = pytest.importorskip("submitit")
    from submitit.slurm.slurm import _make_sbatch_string

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun here
    options = ClusterOptions(tmp_path / "jobs", partition="gpu", gpus_per_job=2, cpus_per_job=6, time_min=90,
                             array_parallelism=4, mem_gb=32)
    backend = build_backend("slurm", cluster=options)
    assert (backend.name, backend.capacity) == ("slurm", 4)
    slurm = backend.executor._executor  # type: ignore[attr-defined]
    text = _make_sbatch_string(command="CMD", folder=slurm.folder, map_count=10, **slurm.parameters)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2",
                 "#SBATCH --cpus-per-task=3",  # one task per GPU, the job's 6 CPUs split between them
                 "#SBATCH --time=90", "#SBATCH --mem=32GB", "#SBATCH --array=0-9%4", "#SBATCH --job-name=taskbalance"):
        assert line in text, line
    assert str(tmp_path / "jobs") in text


@pytest.mark.slow
def test_local_processes_and_submitit_local_run_the_same_study(tmp_path: Path):
    pytest.importorskip("submitit")
    broken = "single_task: false\nmethods:\n  - {name: famo, set: {model.options.bogus: 1}}\n"  # fails when built
    study = _study_file(tmp_path, broken, seeds=(0, 1))
    out = tmp_path / "out"
    with processes.reaped():  # no worker or submitit job outlives the test, whatever happens
        code, text = _cli(str(study), "--out", str(out), "--jobs", "2")
    assert code == 1
    assert "FAILED famo/seed-0" in text and "FAILED famo/seed-1" in text and "bogus" in text
    assert "2 runs did not finish" in text and "the same command retries them" in text
    assert all((out / f"uniform/seed-{s}/results.json").is_file() for s in (0, 1))
    assert "bogus" in (out / "logs/famo/seed-0.log").read_text()

    fixed = _study_file(tmp_path, "single_task: false\nmethods:\n  - {name: famo}\n", seeds=(0, 1))
    with processes.reaped():
        code, text = _cli(str(fixed), "--out", str(out), "--executor", "submitit-local", "--jobs", "2",
                          "--log-folder", str(tmp_path / "jobs"))
    assert code == 0, text
    assert "4 runs (2 finished, 2 to run)" in text  # the failed runs wrote nothing: they are simply run now
    assert all(load_run_result(out / f"famo/seed-{s}").meta["seed"] == s for s in (0, 1))
    assert any((tmp_path / "jobs").iterdir())


def test_validation_curves_average_the_seeds_of_an_arm(tmp_path: Path):
    from types import SimpleNamespace

    from taskbalance.study.curves import plot_validation_curves, validation_curves
    from taskbalance.training.rundir import RunDir

    runs = [SimpleNamespace(name=f"uniform/seed-{s}", arm="uniform") for s in (0, 1)]
    for seed, run in enumerate(runs):
        log = RunDir(tmp_path / run.name).metrics
        log.append({"step": 10, "kind": "train", "loss": 1.0})
        for step, rmse in ((50, 2.0 + seed), (100, 1.0 + seed)):
            log.append(
                {"step": step, "kind": "val", "primary": {"depth": "rmse"}, "metrics": {"depth": {"rmse": rmse}}}
            )
    curves, primary = validation_curves(tmp_path, runs)
    assert primary == {"depth": "rmse"}
    assert {step: sorted(v) for step, v in curves[("uniform", "depth")].items()} == {50: [2.0, 3.0], 100: [1.0, 2.0]}
    path = plot_validation_curves(tmp_path, runs, tmp_path / "curves.png")
    assert path is not None and path.stat().st_size > 0
    assert (
        plot_validation_curves(tmp_path, [SimpleNamespace(name="none/seed-0", arm="none")], tmp_path / "x.png") is None
    )


def test_a_resumed_study_goes_on_seed_by_seed_in_the_presets_order(tmp_path: Path):
    spec = load_study(_study_file(tmp_path), seeds=2)
    out = tmp_path / "out"
    for name in ("stl-depth/seed-0", "stl-normals/seed-0"):  # seed 0's single-task runs finished before a stop
        (out / name).mkdir(parents=True)
        (out / name / "results.json").write_text("{}")
    todo = [r for r in plan(spec) if not (out / r.name / "results.json").is_file()]
    backend = _FakeBackend(failing=set(), killed=set())
    execute(spec, todo, out, backend, Console(record=True), show_bar=False)
    assert backend.submitted == ["uniform/seed-0", "stl-depth/seed-1", "stl-normals/seed-1", "uniform/seed-1"]
