"""The study report rendered: the console (rich), ``report.md`` (Markdown) and ``report.json``, from a
:class:`~taskbalance.study.report.model.StudyReport`. The results table itself is rendered by
:mod:`taskbalance.results.render`; each further section is one :class:`Section`, drawn as a rich table or as Markdown
(:func:`~taskbalance.results.render.markdown_table`) from the same cells.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from taskbalance.conventions import TASK_LABELS
from taskbalance.results import ResultsTable, summarize, to_markdown, to_rich
from taskbalance.results.convergence import MOVE_LIMIT
from taskbalance.results.render import format_mean_std, markdown_table
from taskbalance.results.seed_csv import SEED_CSV
from taskbalance.results.stats import summary_json
from taskbalance.results.table import BASELINE_RULES
from taskbalance.results.verdicts import CORRECTIONS, ONE_SEED
from taskbalance.study.report.model import GRID_ROW, IMBALANCE_LABELS, StudyReport

#: Norm ratios above this come from a task weight driven to about 0 (MGDA); their mean would be meaningless.
RATIO_CAP = 1e6


CONVERGENCE_RULE = (f"Converged: the best validation step is not in the last 10% of training, or the validation Δm "
                    f"(without a single-task validation reference: each task's validation metric, in % change) moves "
                    f"less than {MOVE_LIMIT} points over the last quarter.")


@dataclass(frozen=True)
class Section:
    """A table of the report beside the results table: its title, headers and rows of cells (names first)."""

    title: str
    headers: list[str]
    lines: list[list[str]]
    justify: bool = True  # names left, numbers right (else rich's default)
    fold: bool = False  # wrap long cells rather than cutting them
    styles: list[str] | None = None  # a rich style per row

    def rich(self) -> Table:
        table = Table(title=self.title)
        for i, header in enumerate(self.headers):
            table.add_column(header, justify=("left" if i == 0 else "right") if self.justify else "left",
                             overflow="fold" if self.fold else "ellipsis")
        for i, line in enumerate(self.lines):
            table.add_row(*(escape(cell) for cell in line), style=None if self.styles is None else self.styles[i])
        return table

    def markdown(self) -> str:
        return markdown_table(self.headers, self.lines)


def loss_weights_section(report: StudyReport) -> Section:
    """Table VI: each arm's mean applied loss weights over seeds (mean ± std; normalised to the first task in
    brackets); the grid-search row shows the selected static weights."""
    tasks = [c.task for c in report.table.columns]
    lines = []
    for row in report.loss_weights:
        first = row.per_task[tasks[0]].mean
        lines.append([row.arm, *(format_mean_std(row.per_task[t], lambda v: f"{v:.3g}")
                                 + (f" ({row.per_task[t].mean / first:.3g})" if first else "") for t in tasks)])
    return Section("Mean loss weights over training, mean ± std over seeds (normalised to the first task in brackets)",
                   ["method", *(f"λ {TASK_LABELS.get(t, t)}" for t in tasks)], lines)


def imbalance_cell(key: str, values: Sequence[float]) -> str:
    """Mean ± std over seeds; a norm ratio beyond :data:`RATIO_CAP` in any seed is reported as such instead."""
    if not values:
        return "n/a"
    beyond = sum(v > RATIO_CAP for v in values)
    if key.endswith("ratio_late") and beyond:
        return f"> {RATIO_CAP:.0e} in {beyond} of {len(values)} seeds (a weight ≈ 0)"
    return format_mean_std(summarize(values), lambda v: f"{v:.3g}")


def imbalance_section(report: StudyReport) -> Section:
    """The imbalance summary of each arm, mean ± std over its seeds."""
    lines = [[row.arm, *(imbalance_cell(key, row.values[key]) for key in IMBALANCE_LABELS)]
             for row in report.imbalance]
    return Section("Gradient imbalance (last 25% of training, last shared layer), mean ± std over seeds",
                   ["method", *IMBALANCE_LABELS.values()], lines)


def convergence_section(report: StudyReport) -> Section:
    """The convergence checks (an unconverged arm is flagged, its row yellow)."""
    lines = []
    for check in report.convergence:
        late = [str(s) for s, c in check.seeds.items() if not c.converged]
        status = "converged" if check.converged else f"NOT CONVERGED (seed {', '.join(late)})"
        best = ", ".join(f"{c.best_step}/{c.steps}" if c.best_step is not None else f"—/{c.steps}"
                         for c in check.seeds.values())
        moves = ", ".join("n/a" if c.move is None else f"{c.move:.2f}" for c in check.seeds.values())
        measure = next(iter(check.seeds.values())).measure
        lines.append([check.arm, status, best, f"{moves} ({measure})"])
    styles = ["" if line[1] == "converged" else "yellow" for line in lines]
    return Section("Convergence per arm (seeds in order)", ["arm", "status", "best step / steps", "last-quarter move"],
                   lines, justify=False, fold=True, styles=styles)


def power_section(report: StudyReport) -> Section:
    """The paired comparisons' power."""
    margin = report.margin
    lines = [[name, str(p.n), f"{p.sd:.2f}", f"{p.mdd:.2f}", str(p.seeds_for_margin or "> 100000"),
              f"{p.sd_for_margin:.2f}"] for name, p in report.power]
    return Section(f"Power of the paired comparisons with {report.table.reference or 'uniform'}",
                   ["arm", "n", "paired sd", "MDD (80%)", f"seeds for {margin:g}", f"sd for {margin:g} at n"], lines,
                   fold=True)


def arms_markdown(arms: Sequence[Mapping[str, Any]], steps_trained: Mapping[str, Sequence[int]]) -> str:
    """Every arm's configuration and training length (planned, and the steps its finished runs trained)."""
    headers = ["arm", "kind", "method", "options", "training length", "steps trained", "batch", "lr", "dataset",
               "data options", "model", "seeds"]
    lines = []
    for arm in arms:
        steps = sorted(set(steps_trained.get(arm["arm"], [])))
        lines.append([
            arm["arm"], arm.get("kind", ""), arm.get("method", ""), json.dumps(arm.get("options", {}), sort_keys=True),
            arm.get("length", ""), ", ".join(map(str, steps)) or "—", str(arm.get("batch_size", "")),
            f"{arm.get('lr', '')}",
            arm.get("dataset", ""), json.dumps(arm.get("data_options", {}), sort_keys=True),
            f"{arm.get('arch', '')} / {arm.get('backbone', '')}", ", ".join(map(str, arm.get("seeds", []))),
        ])
    return markdown_table(headers, [[cell.replace("|", "\\|") for cell in line] for line in lines])


def print_report(report: StudyReport, console: Console) -> None:
    """The report on the console: the results table, the model selection and grid choice, the sections, the
    warnings and the verdicts."""
    console.print(to_rich(report.table, title=report.title, width=console.width))
    console.print(f"model selection: {', '.join(report.selection)}")
    for variant, choice in report.grid.items():
        if choice is not None:
            console.print(f"{GRID_ROW}{' (' + variant + ')' if variant else ''}: {choice.arm} {choice.weights} "
                          f"({choice.note})", highlight=False)
    for section in (convergence_section(report), power_section(report), loss_weights_section(report),
                    imbalance_section(report)):
        if section.lines:
            console.print(section.rich())
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    if report.unconverged:
        console.print(f"[yellow]warning:[/yellow] not converged: {escape(', '.join(report.unconverged))}")
    for verdict in report.verdicts:
        console.print(escape(verdict.text().replace("**", "")))


def report_markdown(report: StudyReport, figures: Sequence[Path], out: Path) -> str:
    """``report.md`` (without its final newline); ``figures`` are linked relative to the study folder ``out``."""
    table, mode, margin = report.table, report.delta_m_baseline, report.margin
    weights, imbalance = loss_weights_section(report), imbalance_section(report)
    power = power_section(report)
    return "\n\n".join([
        f"# {report.title}",
        *[f"> **Warning:** {w}" for w in report.warnings],
        *([f"> **Warning:** not converged: {', '.join(report.unconverged)} (see Convergence)"]
          if report.unconverged else []),
        f"Finished runs: {len(report.finished)} of {report.planned_runs}, seeds {', '.join(map(str, report.seeds))}. "
        f"Δm is primarily computed {BASELINE_RULES[mode]} (study preset `delta_m_baseline: {mode}`); "
        f"`{SEED_CSV}` has every run's Δm against both references.",
        "## Results against single-task", to_markdown(table),
        f"Model selection: {', '.join(report.selection)}.",
        *[f"{GRID_ROW}{' (' + v + ')' if v else ''}: `{c.arm}` weights {c.weights} ({c.note})."
          for v, c in report.grid.items() if c is not None],
        *(["## Arms: configuration and training length", arms_markdown(report.planned_arms, report.steps_trained)]
          if report.planned_arms else []),
        *(["## Convergence", convergence_section(report).markdown(), CONVERGENCE_RULE] if report.convergence else []),
        *(["## Power of the paired comparisons", power.markdown(),
           f"Minimum detectable difference (MDD) of each paired comparison with {table.reference} at 80% power "
           f"(two-sided paired t-test, α = 0.05, from its observed paired sd and n); the seeds a {margin:g}-point "
           f"difference (the margin δ) would need at that sd, and the sd at which n seeds would detect it."]
          if report.power else []),
        *(["## Mean loss weights (Table VI style)", weights.markdown()] if weights.lines else []),
        *(["## Gradient imbalance", imbalance.markdown()] if imbalance.lines else []),
        "## Figures", "\n".join(f"![{p.stem}]({p.relative_to(out)})" for p in figures),
        "## Verdicts on the paper's claims",
        f"Each verdict is \"supported\", \"not supported\" or \"inconclusive at n seeds\"; margin δ = {margin:g} "
        f"Δm points (study preset `equivalence_margin`, fixed before the study ran). {CORRECTIONS}"
        + (f" With one seed per arm everything is inconclusive: {ONE_SEED}." if report.one_seed else ""),
        "\n".join(f"- {v.text()}" for v in report.verdicts) or "- (the study has none of the arms the claims compare)",
    ])


def _row_data(table: ResultsTable) -> list[dict[str, Any]]:
    return [{"name": r.name, "n": r.n, "values": [v.mean for v in r.values], "values_std": [v.std for v in r.values],
             "improvements": [m.mean for m in r.improvements], "delta_m": r.delta_m.mean,
             "delta_m_summary": summary_json(r.delta_m), "seed_delta_m": {str(k): v for k, v in r.seed_delta_m.items()},
             "versus_reference": summary_json(r.versus_reference), "versus_p": r.versus_p,
             "versus_p_holm": r.versus_p_holm, "versus_significant": r.versus_significant}
            for r in table.rows]


def report_data(report: StudyReport, figures: Sequence[Path]) -> dict[str, Any]:
    """What ``report.json`` holds (and ``write_report`` returns)."""
    table = report.table
    return {
        "title": report.title,
        "delta_m_baseline": report.delta_m_baseline,
        "equivalence_margin": report.margin,
        "rows": _row_data(table),
        "columns": [c.task for c in table.columns],
        "notes": list(table.notes),
        "grid": {v: c.__dict__ for v, c in report.grid.items() if c is not None},
        "verdicts": [v.__dict__ for v in report.verdicts],
        "convergence": [{"arm": c.arm, "converged": c.converged,
                         "seeds": {str(s): x.__dict__ for s, x in c.seeds.items()}} for c in report.convergence],
        "power": [{"arm": name, **p.__dict__} for name, p in report.power],
        "warnings": report.warnings,
        "arms": [dict(a) for a in report.planned_arms],
        "figures": [str(p) for p in figures],
    }
