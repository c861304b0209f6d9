"""`taskbalance doctor` on constructed diagnostics: runs written in the trainer's own record format (a StepResult
built from chosen task gradients, through training.diagnostics.diagnostic_record), one per branch of the rule;
--steps, --json, the one-line errors, and the check against a constructed study folder."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from taskbalance.balancers import StepResult
from taskbalance.balancers.registry import available
from taskbalance.cli.main import app
from taskbalance.doctor import compute_signals, diagnose, read_records, rules
from taskbalance.doctor.signals import wilson
from taskbalance.doctor.validate import stable_from
from taskbalance.jsonlines import JsonLines
from taskbalance.records import append_record
from taskbalance.results import RunResult, save_run_result
from taskbalance.training.diagnostics import diagnostic_record

TASKS = ("semseg", "depth", "normals", "edge")
PRIMARY = {"semseg": "mIoU", "depth": "rmse", "normals": "mean", "edge": "approx_F"}
HIGHER = {"semseg": True, "depth": False, "normals": False, "edge": True}


def _gradients(norms: Mapping[str, float], conflict: Sequence[tuple[str, str]], noise: float,
               generator: torch.Generator) -> torch.Tensor:
    """One step's task gradients (K x 16): task i along its own axis, a conflicting pair pushed apart along a shared
    axis (cos ≈ -0.5 without noise), all scaled to the given norms."""
    rows = torch.zeros(len(TASKS), 16, dtype=torch.float64)
    for i in range(len(TASKS)):
        rows[i, i] = 1.0
    for a, b in conflict:
        rows[TASKS.index(a), 15] += 1.0
        rows[TASKS.index(b), 15] -= 1.0
    rows += noise * torch.randn(rows.shape, generator=generator, dtype=torch.float64)
    scale = torch.tensor([norms[t] for t in TASKS], dtype=torch.float64)
    return rows / rows.norm(dim=1, keepdim=True) * scale[:, None]


def _record(step: int, gradients: torch.Tensor, weights: Mapping[str, float] | None = None) -> dict:
    w = torch.tensor([1.0 if weights is None else weights[t] for t in TASKS], dtype=torch.float64)
    direction = (w[:, None] * gradients).sum(0)
    result = StepResult(TASKS, {t: 1.0 for t in TASKS}, {t: float(v) for t, v in zip(TASKS, w)}, "last_layer",
                        gradients @ gradients.T, float(direction.norm()), gradients @ direction)
    record = diagnostic_record(step, result)
    assert record is not None
    return record


def write_run(run: Path, phases: Sequence[tuple[int, Mapping[str, float]]], conflict: Sequence[tuple[str, str]] = (),
              noise: float = 0.05, every: int = 10, seed: int = 0) -> Path:
    """A run folder whose diagnostics.jsonl holds ``count`` records per phase with the phase's task norms."""
    generator = torch.Generator().manual_seed(seed)
    log = JsonLines(run / "diagnostics.jsonl")
    step = 0
    for count, norms in phases:
        for _ in range(count):
            step += every
            append_record(log, _record(step, _gradients(norms, conflict, noise, generator)))
    return run


EQUAL = {t: 1.0 for t in TASKS}
EDGE_SMALL = {"semseg": 1.0, "depth": 0.8, "normals": 1.2, "edge": 0.02}


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["doctor", *args])
    return result.exit_code, result.output


def test_thresholds_separate_the_papers_tab_vi_tasks():
    """Tab. VI's AvgNorm weights (NYUD-v2, ResNet-18) imply the norms 1/w_i; Tab. II's Uniform falls below
    single-task on exactly Norm. and Edge: both thresholds must split the tasks that way."""
    weights = {"semseg": 1.22, "depth": 2.47, "normals": 3.97, "edge": 114.00}
    norms = {t: 1 / w for t, w in weights.items()}
    largest = max(norms.values())
    hurt = {"normals", "edge"}
    shares = {t: n / sum(norms.values()) for t, n in norms.items()}
    assert {t for t, n in norms.items() if largest / n >= rules.NORM_RATIO_MARKED} == hurt
    assert {t for t, s in shares.items() if s < rules.AT_RISK_FRACTION_OF_EQUAL / 4} == hurt
    assert shares["normals"] / 0.25 == pytest.approx(0.68, abs=0.005)
    assert shares["depth"] / 0.25 == pytest.approx(1.09, abs=0.005)


def test_rule_names_registered_methods():
    registered = available()
    assert set(rules.RULE_METHODS) <= set(registered)
    assert rules.method_descriptions(("avgnorm",))["avgnorm"] == registered["avgnorm"]


def test_wilson_interval_by_hand():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71674, half 1.96 / 1.38416 * sqrt(0.016 + 0.009604)
    # = 0.22658 (hand computation)
    p = wilson(8, 10)
    assert (p.low, p.high) == pytest.approx((0.49016, 0.94332), abs=2e-4)
    assert wilson(0, 0).value is None and wilson(5, 5).high == 1.0


def test_signals_of_exact_norms(tmp_path: Path):
    """Without noise the shares, the ratio and the cosines are the hand-computed ones."""
    norms = {"semseg": 1.0, "depth": 0.5, "normals": 0.25, "edge": 0.01}
    signals = compute_signals(read_records(write_run(tmp_path / "run", [(6, norms)], noise=0.0)))
    total = 1.76
    assert signals.norm_share == pytest.approx({t: n / total for t, n in norms.items()})
    assert signals.contribution_share == pytest.approx(signals.norm_share)
    assert signals.norm_ratio == pytest.approx(100.0) and signals.largest == "semseg" and signals.smallest == "edge"
    # orthogonal gradients: d = Σ g_j, cos(g_i, d) = ‖g_i‖ / ‖d‖
    assert signals.cos_to_update["depth"] == pytest.approx(0.5 / math.sqrt(1 + 0.25 + 0.0625 + 0.0001))
    assert all(p.mean_cos == pytest.approx(0.0, abs=1e-12) for p in signals.pairs)


def test_norm_dominated_recommends_avgnorm(tmp_path: Path):
    diagnosis = diagnose(compute_signals(read_records(write_run(tmp_path / "run", [(30, EDGE_SMALL)]))))
    rec = diagnosis.recommendation
    assert (rec.verdict, rec.method) == ("norm-dominated", "avgnorm")
    assert rec.triggers["smallest"] == "edge" and rec.triggers["norm_ratio"] == pytest.approx(60, rel=0.1)
    assert diagnosis.at_risk == ("edge",)


def test_conflict_dominated_recommends_a_conflict_aware_method(tmp_path: Path):
    run = write_run(tmp_path / "run", [(30, EQUAL)], conflict=[("semseg", "depth")])
    diagnosis = diagnose(compute_signals(read_records(run)))
    rec = diagnosis.recommendation
    assert (rec.verdict, rec.method) == ("conflict-dominated", "cagrad")
    assert [p.key for p in rules.conflicting_pairs(diagnosis.signals)] == ["semseg|depth"]
    assert rec.triggers["worst_pair_mean_cos"] == pytest.approx(-0.5, abs=0.05)
    assert diagnosis.at_risk == ()


def test_norms_and_conflicts_put_norms_first(tmp_path: Path):
    run = write_run(tmp_path / "run", [(30, EDGE_SMALL)], conflict=[("semseg", "depth")])
    rec = diagnose(compute_signals(read_records(run))).recommendation
    assert (rec.verdict, rec.method) == ("norms and conflicts", "avgnorm") and "cagrad" in rec.alternatives


def test_balanced_recommends_uniform(tmp_path: Path):
    diagnosis = diagnose(compute_signals(read_records(write_run(tmp_path / "run", [(30, EQUAL)]))))
    assert (diagnosis.recommendation.verdict, diagnosis.recommendation.method) == ("balanced", "uniform")
    assert diagnosis.at_risk == ()


def test_weighted_run_reads_contributions(tmp_path: Path):
    """A run whose weights undo the norm gap: raw norms still differ (the recommendation), contributions do not
    (no task at risk)."""
    weights = {t: 1 / n for t, n in EDGE_SMALL.items()}
    log = JsonLines(tmp_path / "run" / "diagnostics.jsonl")
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 11):
        append_record(log, _record(step, _gradients(EDGE_SMALL, (), 0.05, generator), weights))
    diagnosis = diagnose(compute_signals(read_records(tmp_path / "run")))
    assert diagnosis.recommendation.method == "avgnorm" and diagnosis.at_risk == ()
    assert diagnosis.signals.contribution_share["edge"] == pytest.approx(0.25, abs=0.01)


def test_steps_option_and_stabilisation(tmp_path: Path):
    """5 balanced records (steps 10-50), then 15 with a small edge gradient: the first 50 steps say uniform, all
    steps avgnorm. The median ratio over the first i records turns marked at i = 10 (5 balanced, 5 imbalanced:
    the mean of ~1.1 and ~60), so the recommendation settles at step 100."""
    run = write_run(tmp_path / "run", [(5, EQUAL), (15, EDGE_SMALL)])
    assert diagnose(compute_signals(read_records(run, steps=50))).recommendation.method == "uniform"
    assert diagnose(compute_signals(read_records(run, steps=55))).signals.records == 5
    assert diagnose(compute_signals(read_records(run))).recommendation.method == "avgnorm"
    assert stable_from(read_records(run)) == 100
    code, text = _cli(str(run), "--steps", "50", "--no-write")
    assert code == 0 and "Recommendation: uniform" in text and "the first 50 steps" in text
    assert not (run / "doctor.md").exists()


def test_json_output_and_files(tmp_path: Path):
    run = write_run(tmp_path / "run", [(12, EDGE_SMALL)])
    code, text = _cli(str(run), "--json")
    assert code == 0
    report = json.loads(text)
    assert report["recommendation"]["method"] == "avgnorm" and report["at_risk"] == ["edge"]
    assert report["recommendation"]["description"] == available()["avgnorm"]
    assert report["norm_ratio"]["median"] == pytest.approx(compute_signals(read_records(run)).norm_ratio)
    assert report["thresholds"]["NORM_RATIO_MARKED"] == rules.NORM_RATIO_MARKED
    assert "Recommendation: avgnorm" in (run / "doctor.md").read_text() and (run / "doctor.png").stat().st_size > 0
    two = write_run(tmp_path / "two", [(12, EQUAL)])
    code, text = _cli(str(run), str(two), "--json", "--no-write")
    assert code == 0 and [r["recommendation"]["method"] for r in json.loads(text)] == ["avgnorm", "uniform"]


def test_console_report_names_the_numbers(tmp_path: Path):
    code, text = _cli(str(write_run(tmp_path / "run", [(12, EDGE_SMALL)])))
    flat = " ".join(text.split())
    assert code == 0 and "[norm-dominated]" in flat and "‖g_normals‖/‖g_edge‖ =" in flat
    assert "Tasks at risk (contribution share below 0.2): edge" in flat


@pytest.mark.parametrize("setup, message", [
    (lambda p: p.mkdir(), "is neither a run directory (no config.yaml) nor a study folder"),
    (lambda p: None, "does not exist"),
    (lambda p: (p.mkdir(), (p / "config.yaml").write_text("diagnostics: {every: 0}\n")), "diagnostics.every = 0"),
])
def test_one_line_errors(tmp_path: Path, setup, message):
    path = tmp_path / "x"
    setup(path)
    code, text = _cli(str(path))
    assert code == 1 and message in " ".join(text.split()) and "Traceback" not in text


def test_errors_for_single_task_and_early_steps(tmp_path: Path):
    run = write_run(tmp_path / "run", [(3, EQUAL)])
    code, text = _cli(str(run), "--steps", "5")
    assert code == 1 and "no diagnostics record at or before step 5 (the first is at step 10)" in " ".join(text.split())
    single = tmp_path / "single"
    JsonLines(single / "diagnostics.jsonl").append({"step": 1, "tasks": ["depth"], "grad_norms": {"depth": 1.0}})
    code, text = _cli(str(single))
    assert code == 1 and "single-task run (depth)" in " ".join(text.split())


def _result(path: Path, method: str, kind: str, seed: int, values: Mapping[str, float]) -> None:
    tasks = list(values)
    save_run_result(RunResult(name=f"{path.parent.name}/{path.name}", method=method, kind=kind, tasks=tasks,
                              metrics={t: {PRIMARY[t]: v} for t, v in values.items()},
                              primary={t: PRIMARY[t] for t in tasks}, higher_is_better={t: HIGHER[t] for t in tasks},
                              meta={"seed": seed, "steps": 100}), path)


def make_study(root: Path, seeds: Sequence[int] = (0, 1)) -> Path:
    """A study folder as `taskbalance study` lays it out: single-task runs, uniform (with a small edge gradient in
    its diagnostics) and avgnorm. Uniform falls below single-task on edge (seed 0) or on edge and depth (seed 1);
    avgnorm beats uniform on seed 0 and loses on seed 1."""
    stl = {"semseg": 40.0, "depth": 0.60, "normals": 22.0, "edge": 70.0}
    uniform = [{"semseg": 41.0, "depth": 0.59, "normals": 21.5, "edge": 60.0},
               {"semseg": 41.0, "depth": 0.62, "normals": 21.5, "edge": 60.0}]
    avgnorm = [{"semseg": 40.5, "depth": 0.59, "normals": 21.6, "edge": 69.0},
               {"semseg": 30.0, "depth": 0.70, "normals": 25.0, "edge": 60.0}]
    for seed in seeds:
        for task, value in stl.items():
            _result(root / f"stl-{task}" / f"seed-{seed}", "uniform", "stl", seed, {task: value})
        run = write_run(root / "uniform" / f"seed-{seed}", [(2, EQUAL), (10, EDGE_SMALL)], seed=seed)
        _result(run, "uniform", "mtl", seed, uniform[seed])
        _result(root / "avgnorm" / f"seed-{seed}", "avgnorm", "mtl", seed, avgnorm[seed])
    return root


def test_study_agreement(tmp_path: Path):
    study = make_study(tmp_path / "study")
    code, text = _cli(str(study), "--json")
    assert code == 0
    report = json.loads(text)
    # seed 0: at risk {edge} = below {edge}: 4/4 right; seed 1: below {depth, edge}: 3/4 right
    assert report["task_agreement"]["k"] == 7 and report["task_agreement"]["n"] == 8
    assert (report["precision"]["k"], report["precision"]["n"]) == (2, 2)
    assert (report["recall"]["k"], report["recall"]["n"]) == (2, 3)
    assert (report["beats_uniform"]["k"], report["beats_uniform"]["n"]) == (1, 2)
    assert [s["rank"] for s in report["seeds"]] == [1, 2]
    assert [s["below_single_task"] for s in report["seeds"]] == [["edge"], ["depth", "edge"]]
    # two balanced records then imbalanced ones: the median is marked from the 4th record (step 40) on
    assert [s["stable_from"] for s in report["seeds"]] == [40, 40]
    low, high = report["task_agreement"]["low"], report["task_agreement"]["high"]
    assert (low, high) == pytest.approx((wilson(7, 8).low, wilson(7, 8).high))
    code, text = _cli(str(study))
    flat = " ".join(text.split())
    assert code == 0 and "agreement 7/8 = 0.88 (95% Wilson [" in flat and "beats uniform (Δm, per seed): 1/2" in flat
    assert "per (seed, task)" in (study / "doctor.md").read_text()


def test_study_leaves_out_an_unfinished_seed(tmp_path: Path):
    study = make_study(tmp_path / "study")
    (study / "uniform" / "seed-1" / "results.json").unlink()
    code, text = _cli(str(study), "--no-write", "--json")
    report = json.loads(text)
    assert code == 0 and [s["seed"] for s in report["seeds"]] == [0] and report["task_agreement"]["n"] == 4
    assert any("seed 1:" in note and "has not finished" in note for note in report["notes"])


def test_study_without_the_recommended_arm(tmp_path: Path):
    study = make_study(tmp_path / "study", seeds=(0,))
    for path in (study / "avgnorm").rglob("results.json"):
        path.unlink()
    code, text = _cli(str(study), "--no-write", "--json")
    report = json.loads(text)
    assert code == 0 and report["seeds"][0]["rank"] is None and report["beats_uniform"]["n"] == 0
    assert any("has no avgnorm arm" in note for note in report["notes"])
