"""results.json round trips, run discovery, and composing the single-task baseline."""

import json

import pytest

from taskbalance.results import (
    ResultsError,
    RunResult,
    compose_baseline,
    load_results_file,
    load_run_result,
    load_runs,
    save_results,
    save_run_result,
)


def run(name: str, tasks: dict[str, tuple[str, float, bool]], kind: str = "mtl") -> RunResult:
    return RunResult(
        name=name,
        method="stl" if kind == "stl" else name,
        kind=kind,
        tasks=list(tasks),
        metrics={t: {m: v} for t, (m, v, _) in tasks.items()},
        primary={t: m for t, (m, _, _) in tasks.items()},
        higher_is_better={t: h for t, (_, _, h) in tasks.items()},
    )


SEG = ("mIoU", 40.0, True)
DEP = ("rmse", 0.5, False)


def test_save_and_load_round_trip_in_a_run_directory(tmp_path):
    original = run("uniform", {"semseg": SEG, "depth": DEP})
    path = save_run_result(original, tmp_path / "run1")
    assert path == tmp_path / "run1" / "results.json"
    assert load_run_result(tmp_path / "run1") == original
    assert json.loads(path.read_text())["primary"] == {"semseg": "mIoU", "depth": "rmse"}
    assert [p.name for p in (tmp_path / "run1").iterdir()] == ["results.json"]  # no temporary file left behind


def test_collections_and_folders_of_runs(tmp_path):
    a, b = run("a", {"semseg": SEG}), run("b", {"semseg": SEG})
    save_run_result(b, tmp_path / "runs" / "2_b")
    save_run_result(a, tmp_path / "runs" / "1_a")
    save_results([a, b], tmp_path / "all.json")
    assert load_results_file(tmp_path / "all.json") == [a, b]
    assert [r.name for r in load_runs([tmp_path / "runs", tmp_path / "all.json", tmp_path / "runs" / "1_a"])] == [
        "a", "b", "a", "b", "a",
    ]
    with pytest.raises(ResultsError, match="holds 2 runs; expected exactly one"):
        load_run_result(tmp_path / "all.json")
    assert [r.name for r in load_runs([tmp_path])] == ["a", "b"]  # nested run folders (a study's <arm>/seed-<n>)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="holds no results.json"):
        load_runs([tmp_path / "empty"])


def test_invalid_files_name_the_file_and_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    with pytest.raises(ResultsError, match="bad.json is not a valid run result"):
        load_results_file(bad)
    bad.write_text("{not json")
    with pytest.raises(ResultsError, match="cannot read .*bad.json"):
        load_results_file(bad)
    with pytest.raises(ResultsError, match="does not exist"):
        load_results_file(tmp_path / "missing.json")


def test_schema_rejects_inconsistent_runs():
    with pytest.raises(ValueError, match="primary metric 'odsF' is not among its metrics"):
        RunResult(name="x", method="x", kind="mtl", tasks=["edge"], metrics={"edge": {"approx_F": 50.0}},
                  primary={"edge": "odsF"}, higher_is_better={"edge": True})
    with pytest.raises(ValueError, match="higher_is_better covers tasks"):
        RunResult(name="x", method="x", kind="mtl", tasks=["depth"], metrics={"depth": {"rmse": 0.5}},
                  primary={"depth": "rmse"}, higher_is_better={})


def test_compose_baseline_from_per_task_stl_runs():
    seg = run("stl_semseg", {"semseg": SEG}, kind="stl")
    dep = run("stl_depth", {"depth": DEP}, kind="stl")
    base = compose_baseline([dep, seg])
    assert base.kind == "stl" and base.name == "Single-task"
    assert base.tasks == ["semseg", "depth"]  # canonical order
    assert base.primary_values() == {"semseg": 40.0, "depth": 0.5}
    assert base.meta["composed_from"] == {"semseg": "stl_semseg", "depth": "stl_depth"}


def test_compose_baseline_errors():
    seg = run("stl_semseg", {"semseg": SEG}, kind="stl")
    with pytest.raises(ResultsError, match="task 'semseg' is reported by two single-task runs"):
        compose_baseline([seg, run("again", {"semseg": SEG}, kind="stl")])
    with pytest.raises(ResultsError, match="run 'uniform' is a multi-task run"):
        compose_baseline([run("uniform", {"semseg": SEG})])
    with pytest.raises(ResultsError, match="at least one STL run"):
        compose_baseline([])
