"""The study report: Table II-style results over seeds against single-task (mean ± std, 95% t-intervals, the paired
comparison with uniform, Holm-corrected), every arm's configuration and training length, each arm's convergence,
the power of every paired comparison, Table VI-style mean loss weights next to the grid-search weights, the
imbalance summary, the radar chart, the diagnostics figures, and at the end the paper's claims (a)-(d)
(:mod:`taskbalance.results.verdicts`). The title states the steps and seeds actually run.

Written to ``<study>/report.md`` (plus ``table.csv``, ``table.tex``, ``per_seed.csv``, ``report.json``,
``radar.png``, ``figures/*.png``) and printed. This module does not import the study runner: the study passes its runs (anything
with the attributes of :class:`ReportRun`) and, optionally, the description of its arms.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from taskbalance.atomic import atomic_write_text
from taskbalance.conventions import TASK_LABELS
from taskbalance.results import (
    Arm,
    ResultsTable,
    RunResult,
    comparability_warnings,
    compose_baseline,
    delta_m,
    load_run_result,
    radar_chart,
    results_table,
    summarize,
    to_csv,
    to_latex,
    to_markdown,
    to_rich,
)
from taskbalance.results.errors import ResultsError
from taskbalance.results.render import format_mean_std, markdown_table
from taskbalance.results.seed_csv import SEED_CSV, write_seed_csv
from taskbalance.results.table import BASELINE_RULES
from taskbalance.results.verdicts import CORRECTIONS, ONE_SEED, Verdict, judge_claims
from taskbalance.study.report.checks import (
    CONVERGENCE_RULE,
    arm_convergence,
    comparison_power,
    convergence_tables,
    norm_angle_of,
    power_tables,
    validation_reference,
)
from taskbalance.training.config import RunConfig
from taskbalance.training.rundir import RunDir, write_json

GRID_ROW = "grid search"


class ReportRun(Protocol):
    """What the report reads of a planned study run (``study.PlannedRun`` has these)."""

    @property
    def name(self) -> str: ...  # the run's folder inside the study folder
    @property
    def arm(self) -> str: ...  # the arm ([<variant>/]uniform); the runs of one arm differ only in their seed
    @property
    def seed(self) -> int: ...
    @property
    def variant(self) -> str: ...
    @property
    def kind(self) -> str: ...  # "stl", "mtl", "grid" or "url"
    @property
    def config(self) -> RunConfig: ...  # the run's validated config


class ReportSpec(Protocol):
    """What the report reads of a study preset."""

    @property
    def description(self) -> str: ...
    @property
    def diagnostics_runs(self) -> list[str] | None: ...  # arms drawn in the diagnostics figures (None: all MTL arms)
    @property
    def equivalence_margin(self) -> float: ...  # δ of claims (a) and (b) and of the power statements
    @property
    def delta_m_baseline(self) -> str: ...  # "mean" or "per-seed": Δm's single-task reference


@dataclass(frozen=True)
class GridChoice:
    """The grid arm with the best mean validation Δm over seeds (each seed against the same seed's single-task
    validation metrics), or, without validation records, the best mean test Δm (said so in ``note``)."""

    arm: str
    weights: dict[str, float]
    score: float | None
    note: str


@dataclass(frozen=True)
class Finished:
    """A finished run of the study and its ``results.json``."""

    run: ReportRun
    result: RunResult


def _stl_dirs(out: Path, runs: Sequence[ReportRun], run: ReportRun) -> dict[str, RunDir]:
    """The same variant's and seed's single-task run directories, per task."""
    return {r.config.tasks[0]: RunDir(out / r.name) for r in runs
            if r.kind == "stl" and r.variant == run.variant and r.seed == run.seed}


def _validation_delta(run_dir: RunDir, stl_dirs: Mapping[str, RunDir]) -> float | None:
    mtl = run_dir.best_validation_record()
    stl = {task: d.best_validation_record() for task, d in stl_dirs.items()}
    if mtl is None or not stl or any(r is None for r in stl.values()):
        return None
    primary = mtl["primary"]
    try:
        return delta_m({t: mtl["metrics"][t][primary[t]] for t in stl}, {t: r["metrics"][t][primary[t]] for t, r in stl.items()},  # type: ignore[index]
                       mtl["higher_is_better"])
    except (ResultsError, KeyError):
        return None


def _choose_grid(grid: Mapping[str, Sequence[Finished]], runs: Sequence[ReportRun], out: Path,
                baseline: Arm) -> GridChoice | None:
    """Select the grid-search arm on mean validation Δm over its seeds (on mean test Δm, said so, when a seed has
    no validation record)."""
    if not grid:
        return None
    scores: dict[str, float | None] = {}
    for arm, members in grid.items():
        values = [_validation_delta(RunDir(out / f.run.name), _stl_dirs(out, runs, f.run)) for f in members]
        scores[arm] = None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type, misc]
    if all(score is not None for score in scores.values()):
        arm = max(scores, key=lambda a: scores[a])  # type: ignore[arg-type, return-value]
        n = len(grid[arm])
        note = f"the grid point with the best mean validation Δm over {n} seed{'s' if n != 1 else ''}"
        score = scores[arm]
    else:
        table = results_table([Arm(arm, {f.run.seed: f.result for f in members}) for arm, members in grid.items()],
                              baseline, include_baseline=False, reference=None)
        best = max(table.rows, key=lambda row: row.delta_m.mean)
        arm, score = best.name, best.delta_m.mean
        note = "the grid point with the best mean TEST Δm: no validation records"
    weights = dict(grid[arm][0].run.config.method.options.get("weights") or {})
    return GridChoice(arm, weights, score, note)


def _weights_table(rows: Sequence[tuple[str, Sequence[RunResult]]], tasks: Sequence[str]) -> tuple[Table, str]:
    """Table VI: each arm's mean applied loss weights over seeds (mean ± std; normalised to the first task in
    brackets); the grid-search row shows the selected static weights."""
    headers = ["method", *(f"λ {TASK_LABELS.get(t, t)}" for t in tasks)]
    table = Table(title="Mean loss weights over training, mean ± std over seeds (normalised to the first task in brackets)")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    lines = []
    for name, results in rows:
        if not all(r.mean_weights and all(t in r.mean_weights for t in tasks) for r in results):
            continue
        means = {t: summarize([r.mean_weights[t] for r in results]) for t in tasks}
        first = means[tasks[0]].mean
        cells = [format_mean_std(means[t], lambda v: f"{v:.3g}") + (f" ({means[t].mean / first:.3g})" if first else "")
                 for t in tasks]
        table.add_row(escape(name), *cells)
        lines.append([name, *cells])
    return table, markdown_table(headers, lines)


_IMBALANCE = (("max/min w_i‖g_i‖", "norm_ratio_late"), ("max/min ‖g_i‖", "raw_norm_ratio_late"),
              ("spread cos(g_i, d)", "cos_spread_late"))


#: Norm ratios above this come from a task weight driven to about 0 (MGDA); their mean would be meaningless.
RATIO_CAP = 1e6


def _imbalance_cell(key: str, values: Sequence[float]) -> str:
    """Mean ± std over seeds; a norm ratio beyond :data:`RATIO_CAP` in any seed is reported as such instead."""
    if not values:
        return "n/a"
    beyond = sum(v > RATIO_CAP for v in values)
    if key.endswith("ratio_late") and beyond:
        return f"> {RATIO_CAP:.0e} in {beyond} of {len(values)} seeds (a weight ≈ 0)"
    return format_mean_std(summarize(values), lambda v: f"{v:.3g}")


def _imbalance_table(rows: Sequence[tuple[str, Sequence[RunResult]]]) -> tuple[Table, str]:
    """The imbalance summary of each arm, mean ± std over its seeds."""
    headers = ["method", *(label for label, _ in _IMBALANCE)]
    table = Table(title="Gradient imbalance (last 25% of training, last shared layer), mean ± std over seeds")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    lines = []
    for name, results in rows:
        summaries = [r.meta.get("imbalance") or {} for r in results]
        if not all(s.get("steps") for s in summaries):
            continue
        cells = []
        for _, key in _IMBALANCE:
            values = [s[key] for s in summaries if s.get(key) is not None]
            cells.append(_imbalance_cell(key, values))
        table.add_row(escape(name), *cells)
        lines.append([name, *cells])
    return table, markdown_table(headers, lines)


def _arms_section(arms: Sequence[Mapping[str, Any]], finished: Sequence[Finished]) -> str:
    """Every arm's configuration and training length (planned, and the steps its finished runs trained)."""
    trained: dict[str, list[int]] = {}
    for f in finished:
        if f.result.meta.get("steps") is not None:
            trained.setdefault(f.run.arm, []).append(int(f.result.meta["steps"]))
    headers = ["arm", "kind", "method", "options", "training length", "steps trained", "batch", "lr", "dataset",
               "data options", "model", "seeds"]
    lines = []
    for arm in arms:
        steps = sorted(set(trained.get(arm["arm"], [])))
        lines.append([
            arm["arm"], arm.get("kind", ""), arm.get("method", ""), json.dumps(arm.get("options", {}), sort_keys=True),
            arm.get("length", ""), ", ".join(map(str, steps)) or "—", str(arm.get("batch_size", "")), f"{arm.get('lr', '')}",
            arm.get("dataset", ""), json.dumps(arm.get("data_options", {}), sort_keys=True),
            f"{arm.get('arch', '')} / {arm.get('backbone', '')}", ", ".join(map(str, arm.get("seeds", []))),
        ])
    return markdown_table(headers, [[cell.replace("|", "\\|") for cell in line] for line in lines])


def _draw_figures(spec: ReportSpec, finished: Sequence[Finished], table: ResultsTable, out: Path) -> list[Path]:
    """The radar chart (three tasks or more) and the diagnostics figures of the MTL runs (seeds of an arm drawn as
    mean line and band)."""
    from taskbalance.plots import plot_runs

    figures: list[Path] = []
    if len(table.columns) >= 3 and len(table.rows) > 1:
        figures.append(radar_chart(table, out / "radar.png"))
    diagnosed = [f.run for f in finished if f.run.kind != "stl" and RunDir(out / f.run.name).diagnostics.path.is_file()]
    if spec.diagnostics_runs is not None:
        diagnosed = [r for r in diagnosed if r.arm in spec.diagnostics_runs]
    if diagnosed:
        figures += plot_runs([out / r.name for r in diagnosed], out / "figures", labels=[r.arm for r in diagnosed])
    return figures


def _baseline(stl: Sequence[Finished]) -> Arm | None:
    """The single-task baseline per seed, from the seeds whose single-task runs cover every task."""
    tasks = {f.result.tasks[0] for f in stl}
    by_seed: dict[int, list[RunResult]] = {}
    for f in stl:
        by_seed.setdefault(f.run.seed, []).append(f.result)
    complete = {seed: compose_baseline(results) for seed, results in by_seed.items() if {r.tasks[0] for r in results} == tasks}
    return Arm("Single-task", complete) if complete else None


Sources = dict[tuple[str, Any], Path]


def _arm_rows(variants: Sequence[str], finished: Sequence[Finished], runs: Sequence[ReportRun], out: Path,
              baseline: Arm) -> tuple[list[Arm], dict[str, GridChoice | None], Sources]:
    """The table's arms (per variant: its single-task row when not the reference, uniform, the chosen grid arm,
    each method), the grid choice per variant, and the run folder of each (MTL row, seed) of the reference variant."""
    arms: list[Arm] = []
    choices: dict[str, GridChoice | None] = {}
    sources: Sources = {}
    for variant in variants:
        prefix = f"{variant}: " if variant else ""
        members: dict[str, list[Finished]] = {}
        for f in finished:
            if f.run.variant == variant:
                members.setdefault(f.run.arm, []).append(f)
        if variant != variants[0]:
            own = _baseline([f for fs in members.values() for f in fs if f.run.kind == "stl"])
            if own is not None:
                arms.append(Arm(f"{prefix}Single-task", own.runs))
        grid = {arm: fs for arm, fs in members.items() if fs[0].run.kind == "grid"}
        choices[variant] = _choose_grid(grid, runs, out, baseline)
        for arm, fs in members.items():
            kind = fs[0].run.kind
            if kind == "stl" or (kind == "grid" and arm != choices[variant].arm):  # type: ignore[union-attr]
                continue
            label = f"{prefix}{GRID_ROW if kind == 'grid' else arm.split('/')[-1]}"
            arms.append(Arm(label, {f.run.seed: f.result for f in fs}))
            if variant == variants[0]:  # claim (d) reads the reference variant's runs
                sources.update({(label, f.run.seed): out / f.run.name for f in fs})
    return arms, choices, sources


def _avgnorm_row(finished: Sequence[Finished], variant: str) -> str:
    """The label of the reference variant's AvgNorm arm (the method's name when the study has none)."""
    for f in finished:
        if f.run.variant == variant and f.run.kind == "mtl" and f.run.config.method.name == "avgnorm":
            return f.run.arm.split("/")[-1]
    return "avgnorm"


_COUNTS = re.compile(r",?\s*\b\d+\s+(?:steps?|iterations?|epochs?|seeds?)\b", re.IGNORECASE)


def report_title(description: str, finished: Sequence[Finished]) -> str:
    """The report's title: the preset's description without its planned counts, then the steps and seeds actually
    run (``… : 30 steps, 1 seed (0)``; a range when the runs differ)."""
    steps = sorted({int(f.result.meta["steps"]) for f in finished if f.result.meta.get("steps") is not None})
    seeds = sorted({f.run.seed for f in finished})
    base = _COUNTS.sub("", description).strip(" ,:") or "Study report"
    trained = "" if not steps else f"{steps[0]} steps" if len(steps) == 1 else f"{steps[0]}–{steps[-1]} steps"
    ran = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
    return f"{base}: {trained + ', ' if trained else ''}{ran}"


def _convergence(finished: Sequence[Finished], variants: Sequence[str], out: Path, mode: str) -> list[Any]:
    """Each study arm's convergence (the single-task validation reference of its own variant)."""
    checks = []
    for variant in variants:
        stl: dict[Any, dict[str, Path]] = {}
        arms: dict[str, dict[Any, tuple[Path, int | None]]] = {}
        for f in finished:
            if f.run.variant != variant:
                continue
            if f.run.kind == "stl":
                stl.setdefault(f.run.seed, {})[f.result.tasks[0]] = out / f.run.name
            steps = f.result.meta.get("steps")
            arms.setdefault(f.run.arm, {})[f.run.seed] = (out / f.run.name, None if steps is None else int(steps))
        checks += arm_convergence(arms, validation_reference(stl, mode), mode)
    return checks


def _row_data(table: ResultsTable) -> list[dict[str, Any]]:
    def summary(s: Any) -> dict[str, Any] | None:
        return None if s is None else {"n": s.n, "mean": s.mean, "std": s.std, "low": s.low, "high": s.high}

    return [{"name": r.name, "n": r.n, "values": [v.mean for v in r.values], "values_std": [v.std for v in r.values],
             "improvements": [m.mean for m in r.improvements], "delta_m": r.delta_m.mean, "delta_m_summary": summary(r.delta_m),
             "seed_delta_m": {str(k): v for k, v in r.seed_delta_m.items()}, "versus_reference": summary(r.versus_reference),
             "versus_p": r.versus_p, "versus_p_holm": r.versus_p_holm, "versus_significant": r.versus_significant}
            for r in table.rows]


def write_report(spec: ReportSpec, runs: Sequence[ReportRun], out: Path, console: Console | None = None,
                 draw_figures: bool = True, *, arms: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Build, print and save the report of every finished run of the study; returns its data.

    Args:
        runs: the study's planned runs (finished ones are read from ``out/<run.name>``).
        draw_figures: False keeps the figures already in ``out`` (nothing new was trained).
        arms: per arm what the study planned (``study.describe_arms``: arm, kind, method, options, length,
            batch_size, lr, dataset, data_options, arch, backbone, seeds); report.md states them.

    Raises:
        ResultsError: no seed of the reference variant has finished all its single-task runs.
    """
    console = console or Console()
    finished = [Finished(run, load_run_result(out / run.name)) for run in runs if RunDir(out / run.name).is_finished()]
    variants = list(dict.fromkeys(run.variant for run in runs))
    baseline = _baseline([f for f in finished if f.run.kind == "stl" and f.run.variant == variants[0]])
    if baseline is None:
        raise ResultsError("the report needs the single-task runs of the study; no seed has finished all of them")
    mode, margin = spec.delta_m_baseline, spec.equivalence_margin
    table_arms, grid_choices, sources = _arm_rows(variants, finished, runs, out, baseline)
    table = results_table(table_arms, baseline, reference="uniform", baseline_mode=mode)  # type: ignore[arg-type]
    reference_choice = grid_choices.get(variants[0])
    reference_rows = [arm.name for arm in table_arms if any((arm.name, seed) in sources for seed in arm.seeds)]
    verdicts: list[Verdict] = judge_claims(
        table, avgnorm=_avgnorm_row(finished, variants[0]), grid=GRID_ROW,
        grid_choice="" if reference_choice is None else f"{reference_choice.arm}, {reference_choice.note}",
        margin=margin, gradients=norm_angle_of(table, sources, reference_rows))
    warnings = comparability_warnings([f.result for f in finished])
    convergence = _convergence(finished, variants, out, mode)
    power = comparison_power(table, margin)
    title = report_title(spec.description, finished)
    unconverged = [c.arm for c in convergence if not c.converged]

    console.print(to_rich(table, title=title, width=console.width))
    selection = sorted({f.result.selection for f in finished})
    console.print(f"model selection: {', '.join(selection)}")
    for variant, choice in grid_choices.items():
        if choice is not None:
            console.print(f"{GRID_ROW}{' (' + variant + ')' if variant else ''}: {choice.arm} {choice.weights} ({choice.note})", highlight=False)
    rows = [(arm.name, [arm.runs[s] for s in arm.seeds]) for arm in table_arms]
    weights_rich, weights_md = _weights_table(rows, [c.task for c in table.columns])
    imbalance_rich, imbalance_md = _imbalance_table(rows)
    convergence_rich, convergence_md = convergence_tables(convergence)
    power_rich, power_md = power_tables(power, table.reference or "uniform", margin)
    for section in (convergence_rich, power_rich, weights_rich, imbalance_rich):
        if section.row_count:
            console.print(section)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    if unconverged:
        console.print(f"[yellow]warning:[/yellow] not converged: {escape(', '.join(unconverged))}")
    for verdict in verdicts:
        console.print(escape(verdict.text().replace("**", "")))

    if draw_figures:
        figures = _draw_figures(spec, finished, table, out)
        figures += [p for p in sorted(out.glob("figures/*.png")) if p not in figures]  # e.g. the study's curves
    else:
        figures = sorted([*out.glob("radar.png"), *out.glob("figures/*.png")])
    atomic_write_text(out / "table.csv", to_csv(table))
    atomic_write_text(out / "table.tex", to_latex(table))
    write_seed_csv(out / SEED_CSV, table_arms, baseline)
    seeds = sorted({f.run.seed for f in finished})
    one_seed = bool(table.rows) and max(r.n for r in table.rows) < 2
    markdown = "\n\n".join([
        f"# {title}",
        *[f"> **Warning:** {w}" for w in warnings],
        *([f"> **Warning:** not converged: {', '.join(unconverged)} (see Convergence)"] if unconverged else []),
        f"Finished runs: {len(finished)} of {len(runs)}, seeds {', '.join(map(str, seeds))}. "
        f"Δm is primarily computed {BASELINE_RULES[mode]} (study preset `delta_m_baseline: {mode}`); "
        f"`{SEED_CSV}` has every run's Δm against both references.",
        "## Results against single-task", to_markdown(table),
        f"Model selection: {', '.join(selection)}.",
        *[f"{GRID_ROW}{' (' + v + ')' if v else ''}: `{c.arm}` weights {c.weights} ({c.note})."
          for v, c in grid_choices.items() if c is not None],
        *(["## Arms: configuration and training length", _arms_section(arms, finished)] if arms else []),
        *(["## Convergence", convergence_md, CONVERGENCE_RULE] if convergence else []),
        *(["## Power of the paired comparisons", power_md,
           f"Minimum detectable difference (MDD) of each paired comparison with {table.reference} at 80% power "
           f"(two-sided paired t-test, α = 0.05, from its observed paired sd and n); the seeds a {margin:g}-point "
           f"difference (the margin δ) would need at that sd, and the sd at which n seeds would detect it."]
          if power else []),
        *(["## Mean loss weights (Table VI style)", weights_md] if weights_rich.row_count else []),
        *(["## Gradient imbalance", imbalance_md] if imbalance_rich.row_count else []),
        "## Figures", "\n".join(f"![{p.stem}]({p.relative_to(out)})" for p in figures),
        "## Verdicts on the paper's claims",
        f"Each verdict is \"supported\", \"not supported\" or \"inconclusive at n seeds\"; margin δ = {margin:g} "
        f"Δm points (study preset `equivalence_margin`, fixed before the study ran). {CORRECTIONS}"
        + (f" With one seed per arm everything is inconclusive: {ONE_SEED}." if one_seed else ""),
        "\n".join(f"- {v.text()}" for v in verdicts) or "- (the study has none of the arms the claims compare)",
    ])
    atomic_write_text(out / "report.md", markdown + "\n")
    data = {
        "title": title,
        "delta_m_baseline": mode,
        "equivalence_margin": margin,
        "rows": _row_data(table),
        "columns": [c.task for c in table.columns],
        "notes": list(table.notes),
        "grid": {v: c.__dict__ for v, c in grid_choices.items() if c is not None},
        "verdicts": [v.__dict__ for v in verdicts],
        "convergence": [{"arm": c.arm, "converged": c.converged, "seeds": {str(s): x.__dict__ for s, x in c.seeds.items()}}
                        for c in convergence],
        "power": [{"arm": name, **p.__dict__} for name, p in power],
        "warnings": warnings,
        "arms": [dict(a) for a in arms or []],
        "figures": [str(p) for p in figures],
    }
    write_json(out / "report.json", json.loads(json.dumps(data, default=str)))
    return data
