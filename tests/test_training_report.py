"""The study report on constructed run directories (no training): tables over seeds with ± and intervals, the grid
arm chosen on mean validation Δm, every arm's config and training length, the verdicts at the end; and no import
circle between the report and the study runner."""

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

import taskbalance.training.report as report_module
from taskbalance.results import RunResult, save_run_result
from taskbalance.training.report import write_report
from taskbalance.training.rundir import RunDir

DIRECTIONS = {"semseg": ("mIoU", True), "depth": ("rmse", False), "normals": ("mean", False)}


@dataclass(frozen=True)
class Run:
    arm: str
    seed: int
    kind: str
    raw: dict[str, Any]
    variant: str = ""

    @property
    def name(self) -> str:
        return f"{self.arm}/seed-{self.seed}"


@dataclass(frozen=True)
class Spec:
    description: str = "constructed study"
    diagnostics_runs: list[str] | None = field(default=None)


def _finish(out: Path, run: Run, values: dict[str, float], val: dict[str, float] | None = None) -> None:
    tasks = list(values)
    method = "stl" if run.kind == "stl" else run.raw["method"]["name"]
    result = RunResult(name=run.name, method=method, kind="stl" if run.kind == "stl" else "mtl", tasks=tasks,
                       metrics={t: {DIRECTIONS[t][0]: v} for t, v in values.items()},
                       primary={t: DIRECTIONS[t][0] for t in tasks}, higher_is_better={t: DIRECTIONS[t][1] for t in tasks},
                       mean_weights={t: 1.0 for t in tasks}, meta={"seed": run.seed, "steps": 400})
    save_run_result(result, out / run.name)
    if val is not None:
        RunDir(out / run.name).metrics.append({"step": 400, "kind": "val", "best": True, "primary": result.primary,
                                               "higher_is_better": result.higher_is_better,
                                               "metrics": {t: {DIRECTIONS[t][0]: v} for t, v in val.items()}})


def _study(out: Path, seeds: tuple[int, ...]) -> list[Run]:
    runs = []
    stl = {"semseg": 40.0, "depth": 0.5, "normals": 20.0}
    for seed in seeds:
        for task, value in stl.items():
            run = Run(f"stl-{task}", seed, "stl", {"tasks": [task], "method": {"name": "uniform"}})
            _finish(out, run, {task: value + seed}, {task: value})
            runs.append(run)
        mtl = {"tasks": list(stl)}
        shift = 0.1 * seed
        rest = {"depth": 0.5 + seed, "normals": 20.0 + seed}
        arms = [
            # uniform: M_seg = -10% on every seed (clearly below), depth and normals at single-task
            ("uniform", "mtl", "uniform", None, {"semseg": 0.9 * (40.0 + seed), **rest}),
            ("grid-1", "grid", "static", {"semseg": 1, "depth": 1, "normals": 1}, {"semseg": 40.0 + seed + shift, **rest}),
            ("grid-2", "grid", "static", {"semseg": 2, "depth": 1, "normals": 1}, {"semseg": 41.0 + seed + shift, **rest}),
            ("avgnorm", "mtl", "avgnorm", None, {"semseg": 41.0 + seed - shift, **rest}),
        ]
        for arm, kind, method, weights, values in arms:
            options = {"weights": weights} if weights else {}
            run = Run(arm, seed, kind, {"tasks": mtl["tasks"], "method": {"name": method, "options": options}})
            # validation: grid-2 is better than grid-1 on validation Δm
            val = {"semseg": 40.0 + (2.0 if arm == "grid-2" else 0.0), "depth": 0.5, "normals": 20.0}
            _finish(out, run, values, val)
            runs.append(run)
    return runs


ARMS = [{"arm": "uniform", "kind": "mtl", "method": "uniform", "options": {}, "length": "400 iterations", "batch_size": 8,
         "lr": 0.001, "dataset": "synthetic", "data_options": {"resolution": [48, 64]}, "arch": "vanilla",
         "backbone": "tiny", "seeds": [0, 1, 2]}]


def test_report_over_three_seeds_has_spread_intervals_config_and_verdicts(tmp_path: Path):
    runs = _study(tmp_path, (0, 1, 2))
    data = write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=True, arms=ARMS)
    assert [r["name"] for r in data["rows"]] == ["Single-task", "uniform", "grid search", "avgnorm"]
    assert data["grid"][""]["arm"] == "grid-2" and "best mean validation Δm over 3 seeds" in data["grid"][""]["note"]
    uniform = data["rows"][1]
    assert uniform["n"] == 3 and abs(uniform["improvements"][0] + 10.0) < 1e-9
    text = (tmp_path / "report.md").read_text()
    assert "| uniform | 3 |" in text and " ± " in text and "95% t-interval over seeds" in text
    assert "against the same seed's single-task runs" in text
    assert "## Arms: configuration and training length" in text and "400 iterations" in text
    verdicts = text[text.index("## Verdicts"):]
    assert "(a) Uniform weights leave tasks significantly below single-task: **supported at 3 seeds**" in verdicts
    assert "Significantly below single-task: Seg." in verdicts
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
    """report <-> study import circle: the report must not import training.study (not even for type checking)."""
    tree = ast.parse(Path(report_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "taskbalance.results" in imported
    assert "taskbalance.training.study" not in imported and "taskbalance.training.schedule" not in imported


def test_imbalance_ratio_of_a_weight_near_zero_is_reported_not_averaged():
    assert report_module._imbalance_cell("norm_ratio_late", [2.0, 4.0]).startswith("3 ± 1.41")
    capped = report_module._imbalance_cell("norm_ratio_late", [3.0, 1e59, 2e58])
    assert capped == "> 1e+06 in 2 of 3 seeds (a weight ≈ 0)"
    assert report_module._imbalance_cell("cos_spread_late", []) == "n/a"


def test_figures_the_study_drew_before_the_report_are_listed(tmp_path: Path):
    runs = _study(tmp_path, (0, 1))
    (tmp_path / "figures").mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "figures" / "validation_curves.png")
    write_report(Spec(), runs, tmp_path, console=Console(record=True, width=200), draw_figures=True, arms=ARMS)
    assert "![validation_curves](figures/validation_curves.png)" in (tmp_path / "report.md").read_text()
