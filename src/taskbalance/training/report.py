"""The study report: Table II-style results against single-task, Table VI-style mean loss weights next to the
grid-search weights, the imbalance summary of every run, the radar chart and the diagnostics figures.

Written to ``<study>/report.md`` (plus ``table.csv``, ``table.tex``, ``report.json``, ``radar.png``,
``figures/*.png``) and printed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rich.console import Console
from rich.table import Table

from taskbalance.conventions import TASK_LABELS
from taskbalance.results import (
    RunResult,
    compose_baseline,
    delta_m,
    load_run_result,
    radar_chart,
    results_table,
    to_csv,
    to_latex,
    to_markdown,
    to_rich,
)
from taskbalance.results.errors import ResultsError
from taskbalance.atomic import atomic_write_text
from taskbalance.training.rundir import RunDir, write_json

if TYPE_CHECKING:
    from taskbalance.training.study import PlannedRun, StudySpec

GRID_ROW = "grid search"


@dataclass(frozen=True)
class GridChoice:
    """The grid point with the best validation Δm against the single-task runs' validation metrics."""

    run: str
    weights: dict[str, float]
    val_delta_m: float | None
    note: str


def _validation_delta(run_dir: RunDir, stl_dirs: dict[str, RunDir]) -> float | None:
    mtl = run_dir.best_validation_record()
    stl = {task: d.best_validation_record() for task, d in stl_dirs.items()}
    if mtl is None or any(r is None for r in stl.values()):
        return None
    primary = mtl["primary"]
    try:
        return delta_m({t: mtl["metrics"][t][primary[t]] for t in stl}, {t: r["metrics"][t][primary[t]] for t, r in stl.items()},  # type: ignore[index]
                       mtl["higher_is_better"])
    except (ResultsError, KeyError):
        return None


def choose_grid(grid: Sequence[tuple[PlannedRun, RunResult]], out: Path, baseline: RunResult) -> GridChoice | None:
    """Select the grid-search arm on validation Δm (on test Δm, said so, when there is no validation split)."""
    if not grid:
        return None
    scored = []
    for run, result in grid:
        stl_dirs = {t: RunDir(out / (f"{run.variant}/stl-{t}" if run.variant else f"stl-{t}")) for t in result.tasks}
        scored.append((_validation_delta(RunDir(out / run.name), stl_dirs), run, result))
    if all(score is not None for score, _, _ in scored):
        score, run, _ = max(scored, key=lambda item: item[0])  # type: ignore[arg-type, return-value]
        note = "selected on validation Δm"
    else:
        test_scores = [(delta_m(r.primary_values(), {t: baseline.primary_values()[t] for t in r.tasks}, r.higher_is_better), p, r)
                       for _, p, r in scored]
        score, run, _ = max(test_scores, key=lambda item: item[0])
        note = "selected on TEST Δm: no validation split"
    weights = dict(run.raw["method"].get("options", {}).get("weights") or {})
    return GridChoice(run.name, weights, score, note)


def _weights_table(rows: Sequence[tuple[str, RunResult]], tasks: Sequence[str]) -> tuple[Table, str]:
    """Table VI: each method's mean applied loss weights (raw, and normalised to the first task); the grid-search row
    shows the selected static weights."""
    table = Table(title="Mean loss weights over training (normalised to the first task in brackets)")
    table.add_column("method")
    for task in tasks:
        table.add_column(f"λ {TASK_LABELS.get(task, task)}", justify="right")
    lines = ["| method | " + " | ".join(f"λ {TASK_LABELS.get(t, t)}" for t in tasks) + " |",
             "|---|" + "---:|" * len(tasks)]

    def add(name: str, weights: dict[str, float]) -> None:
        first = weights.get(tasks[0]) or 0.0
        cells = [f"{weights[t]:.3g} ({weights[t] / first:.3g})" if first else f"{weights[t]:.3g}" for t in tasks]
        table.add_row(name, *cells)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    for name, result in rows:
        if result.mean_weights and all(t in result.mean_weights for t in tasks):
            add(name, result.mean_weights)
    return table, "\n".join(lines)


def _imbalance_table(rows: Sequence[tuple[str, RunResult]]) -> tuple[Table, str]:
    table = Table(title="Gradient imbalance (last 25% of training, last shared layer)")
    headers = ("max/min w_i‖g_i‖", "max/min ‖g_i‖", "spread cos(g_i, d)")
    table.add_column("method")
    for column in headers:
        table.add_column(column, justify="right")
    lines = ["| method | " + " | ".join(headers) + " |", "|---|---:|---:|---:|"]
    for name, result in rows:
        summary = result.meta.get("imbalance") or {}
        if not summary.get("steps"):
            continue
        cells = [f"{summary[k]:.3g}" if summary.get(k) is not None else "n/a"
                 for k in ("norm_ratio_late", "raw_norm_ratio_late", "cos_spread_late")]
        table.add_row(name, *cells)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return table, "\n".join(lines)


def _phenomenon(table: Any, row_name: str) -> str | None:
    """Which tasks a row leaves below single-task (M_i < 0), read off the table."""
    for row in table.rows:
        if row.name == row_name:
            below = [f"{TASK_LABELS.get(c.task, c.task)} ({m.mean:+.2f}%)" for c, m in zip(table.columns, row.improvements) if m.mean < 0]
            if not below:
                return f"{row_name}: every task is at or above single-task (Δm {row.delta_m.mean:+.2f}%)."
            return f"{row_name}: below single-task on {', '.join(below)}; Δm {row.delta_m.mean:+.2f}%."
    return None


def _draw_figures(spec: StudySpec, finished: Sequence[tuple[PlannedRun, RunResult]], table: Any, out: Path) -> list[Path]:
    """The radar chart (three tasks or more) and the diagnostics figures of the MTL runs."""
    from taskbalance.plots import plot_runs

    figures: list[Path] = []
    if len(table.columns) >= 3 and len(table.rows) > 1:
        figures.append(radar_chart(table, out / "radar.png", title="M_i against single-task"))
    diagnosed = [out / p.name for p, _ in finished if p.kind != "stl" and RunDir(out / p.name).diagnostics.path.is_file()]
    if spec.diagnostics_runs is not None:
        diagnosed = [d for d in diagnosed if d.name in spec.diagnostics_runs]
    if diagnosed:
        figures += plot_runs(diagnosed, out / "figures")
    return figures


def write_report(spec: StudySpec, runs: Sequence[PlannedRun], out: Path, console: Console | None = None,
                 draw_figures: bool = True) -> dict[str, Any]:
    """Build, print and save the report of every finished run of the study; returns its data. With
    ``draw_figures=False`` the figures already in ``out`` are kept (nothing new was trained)."""
    console = console or Console()
    finished = [(run, load_run_result(out / run.name)) for run in runs if RunDir(out / run.name).is_finished()]
    variants = list(dict.fromkeys(run.variant for run in runs))
    stl = {v: [r for p, r in finished if p.kind == "stl" and p.variant == v] for v in variants}
    reference_variant = variants[0]
    if not stl[reference_variant]:
        raise ResultsError("the report needs the single-task runs of the study; none has finished")
    baseline = compose_baseline(stl[reference_variant])
    rows: list[tuple[str, RunResult]] = []
    grid_choices: dict[str, GridChoice | None] = {}
    for variant in variants:
        prefix = f"{variant}: " if variant else ""
        if variant != reference_variant and stl[variant]:
            rows.append((f"{prefix}Single-task", compose_baseline(stl[variant])))
        grid = [(p, r) for p, r in finished if p.kind == "grid" and p.variant == variant]
        grid_choices[variant] = choose_grid(grid, out, baseline)
        for planned, result in finished:
            if planned.variant != variant or planned.kind == "stl":
                continue
            if planned.kind == "grid":
                if grid_choices[variant] is None or planned.name != grid_choices[variant].run:  # type: ignore[union-attr]
                    continue
                rows.append((f"{prefix}{GRID_ROW}", result))
            else:
                rows.append((f"{prefix}{planned.name.split('/')[-1]}", result))
    named = [result.model_copy(update={"name": name}) for name, result in rows]
    table = results_table(named, baseline)
    console.print(to_rich(table, title=spec.description or "Results against single-task (Δm, Eq. 5)"))
    selection = sorted({r.selection for _, r in rows} | {baseline.selection})
    console.print(f"model selection: {', '.join(selection)}")
    for variant, choice in grid_choices.items():
        if choice is not None:
            console.print(f"{GRID_ROW}{' (' + variant + ')' if variant else ''}: {choice.run} {choice.weights} ({choice.note})")
    weights_rich, weights_md = _weights_table(rows, list(baseline.tasks))
    imbalance_rich, imbalance_md = _imbalance_table(rows)
    console.print(weights_rich)
    console.print(imbalance_rich)
    findings = [text for text in (_phenomenon(table, "uniform"), _phenomenon(table, GRID_ROW)) if text]
    for text in findings:
        console.print(f"[bold]{text}[/bold]")

    figures = _draw_figures(spec, finished, table, out) if draw_figures else sorted([*out.glob("radar.png"), *out.glob("figures/*.png")])

    atomic_write_text(out / "table.csv", to_csv(table))
    atomic_write_text(out / "table.tex", to_latex(table))
    markdown = "\n\n".join([
        f"# {spec.description or 'Study report'}",
        to_markdown(table),
        f"Model selection: {', '.join(selection)}.",
        *[f"{GRID_ROW}{' (' + v + ')' if v else ''}: `{c.run}` weights {c.weights} ({c.note})."
          for v, c in grid_choices.items() if c is not None],
        "## Mean loss weights (Table VI style)", weights_md,
        "## Gradient imbalance", imbalance_md,
        "## Findings", "\n".join(f"- {t}" for t in findings) or "- (no uniform run)",
        "## Figures", "\n".join(f"![{p.stem}]({p.relative_to(out)})" for p in figures),
    ])
    atomic_write_text(out / "report.md", markdown + "\n")
    data = {
        "rows": [{"name": r.name, "values": [v.mean for v in r.values], "improvements": [m.mean for m in r.improvements], "delta_m": r.delta_m.mean}
                 for r in table.rows],
        "columns": [c.task for c in table.columns],
        "grid": {v: c.__dict__ for v, c in grid_choices.items() if c is not None},
        "findings": findings,
        "figures": [str(p) for p in figures],
    }
    write_json(out / "report.json", json.loads(json.dumps(data)))
    return data
