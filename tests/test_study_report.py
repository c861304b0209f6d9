"""The study report on constructed run directories (no training): tables over seeds with ± and intervals, the grid
arm chosen on mean validation Δm, every arm's config and training length, the verdicts at the end; and no import
circle between the report and the study runner."""

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import taskbalance.study.report as report_package
from taskbalance.results import RunResult, save_run_result
from taskbalance.study.report import compute_report, write_report
from taskbalance.study.report.render import imbalance_cell, report_markdown
from taskbalance.training.config import RunConfig, validate_config
from taskbalance.training.rundir import RunDir

DIRECTIONS = {"semseg": ("mIoU", True), "depth": ("rmse", False), "normals": ("mean", False)}


@dataclass(frozen=True)
class Run:
    arm: str
    seed: int
    kind: str
    config: RunConfig
    variant: str = ""

    @property
    def name(self) -> str:
        return f"{self.arm}/seed-{self.seed}"


@dataclass(frozen=True)
class Spec:
    description: str = "constructed study, 300 steps, 3 seeds"
    diagnostics_runs: list[str] | None = field(default=None)
    equivalence_margin: float = 2.0
    delta_m_baseline: str = "mean"


def _finish(out: Path, run: Run, values: dict[str, float], val: dict[str, float] | None = None) -> None:
    tasks = list(values)
    method = "stl" if run.kind == "stl" else run.config.method.name
    result = RunResult(name=run.name, method=method, kind="stl" if run.kind == "stl" else "mtl", tasks=tasks,
                       metrics={t: {DIRECTIONS[t][0]: v} for t, v in values.items()},
                       primary={t: DIRECTIONS[t][0] for t in tasks},
                       higher_is_better={t: DIRECTIONS[t][1] for t in tasks},
                       mean_weights={t: 1.0 for t in tasks}, meta={"seed": run.seed, "steps": 400})
    save_run_result(result, out / run.name)
    if val is not None:
        RunDir(out / run.name).metrics.append({"step": 400, "kind": "val", "best": True, "primary": result.primary,
                                               "higher_is_better": result.higher_is_better,
                                               "metrics": {t: {DIRECTIONS[t][0]: v} for t, v in val.items()}})


def _config(tasks: list[str], method: str, options: dict[str, Any] | None = None) -> RunConfig:
    return validate_config({"tasks": tasks, "method": {"name": method, "options": options or {}},
                            "optim": {"iterations": 400}})


def _study(out: Path, seeds: tuple[int, ...]) -> list[Run]:
    runs = []
    stl = {"semseg": 40.0, "depth": 0.5, "normals": 20.0}
    for seed in seeds:
        for task, value in stl.items():
            run = Run(f"stl-{task}", seed, "stl", _config([task], "uniform"))
            _finish(out, run, {task: value + seed}, {task: value})
            runs.append(run)
        mtl = {"tasks": list(stl)}
        shift = 0.1 * seed
        rest = {"depth": 0.5 + seed, "normals": 20.0 + seed}
        arms = [
            # uniform: M_seg = -10% on every seed (clearly below), depth and normals at single-task
            ("uniform", "mtl", "uniform", None, {"semseg": 0.9 * (40.0 + seed), **rest}),
            ("grid-1", "grid", "static", {"semseg": 1, "depth": 1, "normals": 1},
             {"semseg": 40.0 + seed + shift, **rest}),
            ("grid-2", "grid", "static", {"semseg": 2, "depth": 1, "normals": 1},
             {"semseg": 41.0 + seed + shift, **rest}),
            ("avgnorm", "mtl", "avgnorm", None, {"semseg": 41.0 + seed - shift, **rest}),
        ]
        for arm, kind, method, weights, values in arms:
            options = {"weights": weights} if weights else {}
            run = Run(arm, seed, kind, _config(mtl["tasks"], method, options))
            # validation: grid-2 is better than grid-1 on validation Δm
            val = {"semseg": 40.0 + (2.0 if arm == "grid-2" else 0.0), "depth": 0.5, "normals": 20.0}
            _finish(out, run, values, val)
            runs.append(run)
    return runs


ARMS = [{"arm": "uniform", "kind": "mtl", "method": "uniform", "options": {}, "length": "400 iterations",
         "batch_size": 8, "lr": 0.001, "dataset": "synthetic", "data_options": {"resolution": [48, 64]},
         "arch": "vanilla", "backbone": "tiny", "seeds": [0, 1, 2]}]


def test_report_over_three_seeds_has_spread_intervals_config_and_verdicts(tmp_path: Path):
    runs = _study(tmp_path, (0, 1, 2))
    data = write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=True, arms=ARMS)
    assert [r["name"] for r in data["rows"]] == ["Single-task", "uniform", "grid search", "avgnorm"]
    assert data["grid"][""]["arm"] == "grid-2" and "best mean validation Δm over 3 seeds" in data["grid"][""]["note"]
    uniform = data["rows"][1]
    assert uniform["n"] == 3 and abs(uniform["improvements"][0] + 10.0) < 1e-9
    text = (tmp_path / "report.md").read_text()
    assert "| uniform | 3 |" in text and " ± " in text and "95% t-interval over seeds" in text
    assert "against the mean over seeds of the single-task runs" in text
    assert "## Arms: configuration and training length" in text and "400 iterations" in text
    verdicts = text[text.index("## Verdicts"):]
    assert "(a) Uniform weights leave tasks significantly below single-task: **supported at 3 seeds**" in verdicts
    assert "Significantly below single-task (Holm-corrected across 3 tasks): Seg." in verdicts
    assert "(b) AvgNorm comes close to the grid search" in verdicts and "grid-2" in verdicts
    assert "(c)" in verdicts and [v["status"] for v in data["verdicts"]][0] == "supported"
    assert (tmp_path / "radar.png").is_file()
    assert "vs uniform" in (tmp_path / "table.csv").read_text().splitlines()[0]


def test_report_of_one_seed_says_it_cannot_separate_the_arms(tmp_path: Path):
    runs = _study(tmp_path, (0,))
    data = write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=False)
    assert {v["status"] for v in data["verdicts"]} == {"inconclusive"}
    text = (tmp_path / "report.md").read_text()
    assert "one seed cannot separate the arms" in text and "## Arms" not in text


def test_report_does_not_import_the_study_runner():
    """report <-> study import circle: no module of the report imports the study's planner or scheduler (not even
    for type checking); it reads the runs through the ``ReportRun`` protocol."""
    imported: set[str] = set()
    for path in Path(report_package.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "taskbalance.results" in imported
    assert not {m for m in imported if m.startswith(("taskbalance.study.plan", "taskbalance.study.schedule"))}
    assert "taskbalance.study" not in imported


def test_imbalance_ratio_of_a_weight_near_zero_is_reported_not_averaged():
    assert imbalance_cell("norm_ratio_late", [2.0, 4.0]).startswith("3 ± 1.41")
    capped = imbalance_cell("norm_ratio_late", [3.0, 1e59, 2e58])
    assert capped == "> 1e+06 in 2 of 3 seeds (a weight ≈ 0)"
    assert imbalance_cell("cos_spread_late", []) == "n/a"


def test_figures_the_study_drew_before_the_report_are_listed(tmp_path: Path):
    runs = _study(tmp_path, (0, 1))
    (tmp_path / "figures").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "figures" / "validation_curves.png")
    write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=True, arms=ARMS)
    assert "![validation_curves](figures/validation_curves.png)" in (tmp_path / "report.md").read_text()


def test_report_title_states_the_steps_and_seeds_run_not_the_presets(tmp_path: Path):
    runs = _study(tmp_path, (0,))
    data = write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=False)
    # the preset says "300 steps, 3 seeds"; one seed of 400 steps was run
    assert data["title"] == "constructed study: 400 steps, 1 seed (0)"
    assert (tmp_path / "report.md").read_text().startswith("# constructed study: 400 steps, 1 seed (0)\n")


def test_report_writes_the_per_seed_csv_and_states_the_primary_baseline(tmp_path: Path):
    runs = _study(tmp_path, (0, 1))
    write_report(Spec(delta_m_baseline="per-seed"), runs, tmp_path, console=Console(record=True, width=200),
                 draw_figures=False)
    lines = (tmp_path / "per_seed.csv").read_text().splitlines()
    assert lines[0] == "arm,seed,semseg.mIoU ↑,depth.rmse ↓,normals.mean ↓,delta_m_mean,delta_m_per_seed"
    uniform_1 = next(line for line in lines if line.startswith("uniform,1,")).split(",")
    # per seed: M_seg = -10, others 0 -> -10/3; against the mean (seed 0 and 1: 40.5, 1.0, 20.5): hand-computed
    assert float(uniform_1[-1]) == pytest.approx(-10 / 3)
    mean_delta = ((0.9 * 41 - 40.5) / 40.5 - (1.5 - 1.0) / 1.0 - (21 - 20.5) / 20.5) * 100 / 3
    assert float(uniform_1[-2]) == pytest.approx(mean_delta)
    text = (tmp_path / "report.md").read_text()
    assert ("Δm is primarily computed per seed against the same seed's single-task runs "
            "(study preset `delta_m_baseline: per-seed`)") in text


def _curve(out: Path, run: Run, deltas: list[tuple[int, float, bool]]) -> None:
    """Validation records with semseg = 40 * (1 + 3 · Δm / 100) (depth, normals at single-task)."""
    log = RunDir(out / run.name).metrics
    for step, delta, best in deltas:
        values = {"semseg": 40.0 * (1 + 3 * delta / 100), "depth": 0.5, "normals": 20.0}
        log.append({"step": step, "kind": "val", "best": best, "primary": {t: DIRECTIONS[t][0] for t in values},
                    "higher_is_better": {t: DIRECTIONS[t][1] for t in values},
                    "metrics": {t: {DIRECTIONS[t][0]: v} for t, v in values.items()}})


def test_convergence_flags_arms_still_improving(tmp_path: Path):
    runs = _study(tmp_path, (0, 1))
    for run in runs:
        if run.arm == "uniform":  # still rising by 2 Δm points over the last quarter, best at the last step
            _curve(tmp_path, run, [(100, -5.0, True), (300, -3.0, True), (400, -1.0, True)])
        elif run.arm == "avgnorm":  # best at the end, but flat over the last quarter (0.2 points)
            _curve(tmp_path, run, [(100, -5.0, True), (300, -1.2, True), (400, -1.0, True)])
        elif run.arm == "grid-2":  # best at step 300 of 400: early enough
            _curve(tmp_path, run, [(100, -5.0, True), (300, -1.0, True), (400, -4.0, False)])
    data = write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=False)
    status = {c["arm"]: c["converged"] for c in data["convergence"]}
    assert status["uniform"] is False and status["avgnorm"] is True and status["grid-2"] is True
    uniform = data["convergence"][[c["arm"] for c in data["convergence"]].index("uniform")]
    assert uniform["seeds"]["0"]["move"] == pytest.approx(2.0)
    text = (tmp_path / "report.md").read_text()
    assert "> **Warning:** not converged: " in text and "| uniform | NOT CONVERGED (seed 0, 1) |" in text


def test_report_has_claim_d_and_every_comparisons_power(tmp_path: Path):
    runs = _study(tmp_path, (0, 1, 2))
    for run in runs:
        if run.kind == "stl":
            continue
        # uniform and grid starve semseg's gradient share; its M_seg is the drop (uniform -10%, others about 0)
        share = {"uniform": 0.1, "grid-1": 0.3, "grid-2": 0.33, "avgnorm": 0.34}[run.arm] + 0.01 * run.seed
        rest = (1 - share) / 2
        for step in (10, 20):
            RunDir(tmp_path / run.name).diagnostics.append({
                "step": step, "tasks": ["semseg", "depth", "normals"],
                "weighted_grad_norms": {"semseg": share, "depth": rest, "normals": rest},
                "cos": {"semseg|depth": 0.1, "semseg|normals": 0.2 - 0.01 * run.seed, "depth|normals": 0.0},
                "cos_to_update": {"semseg": 0.5, "depth": 0.6, "normals": 0.55}})
    data = write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=False)
    verdict = next(v for v in data["verdicts"] if v["claim"].startswith("(d)"))
    assert verdict["details"]["points"] == 27 and verdict["details"]["arms"] == 3 and verdict["details"]["seeds"] == 3
    text = (tmp_path / "report.md").read_text()
    assert "(d) Imbalance follows the gradient norm, not the angle" in text
    assert "## Power of the paired comparisons" in text and "| grid search | 3 |" in text
    assert [p["arm"] for p in data["power"]] == ["grid search", "avgnorm"]


def test_rich_output_at_80_columns_cuts_no_header_or_name(tmp_path: Path):
    runs = _study(tmp_path, (0, 1, 2))
    console = Console(record=True, width=80)
    write_report(Spec(), runs, tmp_path, console=console, draw_figures=False)
    output = console.export_text()
    assert "…" not in output and max(len(line) for line in output.splitlines()) <= 80
    for word in ("Single-task", "uniform", "avgnorm", "Seg.", "mIoU", "RMSE", "mErr", "Δm%", "CI", "(reference)",
                 "NOT CONVERGED"):
        assert word in output


def test_the_report_is_computed_without_writing_and_rendered_from_its_model(tmp_path: Path):
    runs = _study(tmp_path, (0, 1, 2))
    before = sorted(tmp_path.rglob("*"))
    report = compute_report(Spec(), runs, tmp_path, ARMS)
    assert sorted(tmp_path.rglob("*")) == before  # computing reads the run folders only
    assert report.grid[""] is not None and report.grid[""].arm == "grid-2"  # better on validation
    assert report.seeds == [0, 1, 2] and report.planned_runs == len(runs) == 21 and len(report.finished) == 21
    assert [row.name for row in report.table.rows] == ["Single-task", "uniform", "grid search", "avgnorm"]
    uniform = report.table.row("uniform")
    assert uniform is not None and uniform.delta_m.mean == pytest.approx(-10 / 3)  # M_seg = -10%, 3 tasks
    assert report.steps_trained == {r.arm: [400, 400, 400] for r in runs}
    assert [w.arm for w in report.loss_weights] == ["uniform", "grid search", "avgnorm"]
    assert report.loss_weights[0].per_task["depth"].mean == 1.0 and report.loss_weights[0].per_task["depth"].std == 0
    data = write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=False, arms=ARMS)
    assert (tmp_path / "report.md").read_text() == report_markdown(report, [], tmp_path) + "\n"
    assert data["title"] == report.title
    assert [v["status"] for v in data["verdicts"]] == [v.status for v in report.verdicts]


def test_validation_reference_is_the_seeds_own_or_the_mean_of_complete_seeds(tmp_path: Path):
    from taskbalance.jsonlines import JsonLines
    from taskbalance.records import ValidationRecord, append_record
    from taskbalance.study.report.checks import validation_reference

    def stl_run(name: str, task: str, value: float) -> Path:
        append_record(JsonLines(tmp_path / name / "metrics.jsonl"),
                      ValidationRecord(step=10, metrics={task: {"m": value}}, primary={task: "m"}, best=True))
        return tmp_path / name

    folders = {0: {"a": stl_run("a0", "a", 1.0), "b": stl_run("b0", "b", 10.0)},
               1: {"a": stl_run("a1", "a", 3.0), "b": stl_run("b1", "b", 30.0)},
               2: {"a": stl_run("a2", "a", 5.0)}}  # seed 2 lacks task b
    own = validation_reference(folders, "per-seed")
    assert own(1) == {"a": 3.0, "b": 30.0} and own(2) == {"a": 5.0} and own(7) is None
    mean = validation_reference(folders, "mean")  # the tasks every seed has: a only
    assert mean(0) == mean(7) == {"a": 3.0}
    assert validation_reference(dict(list(folders.items())[:2]), "mean")(0) == {"a": 2.0, "b": 20.0}
