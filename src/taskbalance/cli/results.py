"""``taskbalance results``: paper-style tables and radar charts of runs against a single-task baseline."""

from __future__ import annotations

import io
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from taskbalance.atomic import atomic_write_text
from taskbalance.cli.failure import fail
from taskbalance.results import (
    ResultsError,
    ResultsTable,
    baseline_arm,
    comparability_warnings,
    group_runs,
    load_runs,
    radar_chart,
    render_text,
    results_table,
    save_results,
    to_rich,
)

results_app = typer.Typer(
    no_args_is_help=True,
    help="Result tables (rich, Markdown, CSV, LaTeX) and radar charts against a single-task baseline.",
)

RUNS_HELP = ("Runs: run directories (with results.json), folders of run directories, or results JSON files. Runs that "
             "differ only in their seed (meta.seed) form one row, reported as mean ± std over seeds.")
BASELINE_HELP = (
    "Single-task baseline: STL run directories / JSON files, one per task and seed (repeat the option), or a folder "
    "of them; each seed's runs are composed into that seed's baseline. Default: the single-task runs among the "
    "runs (e.g. a study folder)."
)
TASKS_HELP = "Comma-separated task columns (default: every baseline task that all runs report)."
MODE_HELP = ("Δm's single-task reference: 'mean' (the single-task mean over seeds, the paper's fixed reference) or "
             "'per-seed' (each run against the same seed's single-task runs).")


class BaselineModeOption(str, Enum):
    """The single-task references of ``--baseline-mode``."""

    mean = "mean"
    per_seed = "per-seed"


class TableFormat(str, Enum):
    """Output formats of ``results table``."""

    rich = "rich"
    markdown = "markdown"
    csv = "csv"
    latex = "latex"


def _table(runs: list[Path], baseline: list[Path] | None, tasks: str | None,
           mode: BaselineModeOption = BaselineModeOption.mean) -> ResultsTable:
    """Runs grouped into arms (seeds of one config together), against the single-task runs per seed (``baseline``,
    or the single-task runs among ``runs``); warns on stderr when the runs differ in training length, dataset or
    resolution."""
    columns = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    found = load_runs(runs)
    loaded = [r for r in found if r.kind != "stl"]
    stl = load_runs(baseline) if baseline else [r for r in found if r.kind == "stl"]
    if not stl:
        raise ResultsError("no single-task run among the runs: pass the single-task runs with --baseline")
    for warning in comparability_warnings([*stl, *loaded]):
        Console(stderr=True).print(f"[yellow]warning:[/] {warning}", highlight=False)
    return results_table(group_runs(loaded), baseline_arm(stl), tasks=columns, baseline_mode=mode.value)


@results_app.command("table")
def table_command(
    runs: list[Path] = typer.Argument(..., help=RUNS_HELP),
    baseline: list[Path] | None = typer.Option(None, "--baseline", "-b", help=BASELINE_HELP),
    fmt: TableFormat = typer.Option(TableFormat.rich, "--format", "-f", help="Output format."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file (atomically) instead of stdout."),
    tasks: str | None = typer.Option(None, "--tasks", help=TASKS_HELP),
    title: str | None = typer.Option(None, "--title", help="Title of the rich table."),
    mode: BaselineModeOption = typer.Option(BaselineModeOption.mean, "--baseline-mode", help=MODE_HELP),
) -> None:
    """Print the paper-style table: one row per arm (method and the config values that differ), each task's primary
    metric (↑/↓) and Δm% as mean ± std over seeds, Δm's 95% t-interval and the paired comparison with uniform."""
    try:
        table = _table(runs, baseline, tasks, mode)
    except ResultsError as error:
        raise fail(error) from None
    if fmt is TableFormat.rich:
        if out is None:
            console = Console()
            console.print(to_rich(table, title=title, width=console.width))
            return
        rich_table = to_rich(table, title=title)
        buffer = io.StringIO()
        Console(file=buffer, width=200, no_color=True).print(rich_table)
        text = buffer.getvalue()
    else:
        text = render_text(table, fmt.value)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


@results_app.command("radar")
def radar_command(
    runs: list[Path] = typer.Argument(..., help=RUNS_HELP),
    baseline: list[Path] | None = typer.Option(None, "--baseline", "-b", help=BASELINE_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    tasks: str | None = typer.Option(None, "--tasks", help=TASKS_HELP),
    title: str | None = typer.Option(None, "--title", help="Figure title."),
) -> None:
    """Draw each run's per-task improvement M_i over the baseline as a radar chart (the paper's Fig. 4)."""
    try:
        radar_chart(_table(runs, baseline, tasks), out, title=title)
    except ResultsError as error:
        raise fail(error) from None
    typer.echo(f"wrote {out}")


@results_app.command("readme-table")
def readme_table_command(
    csv_file: Path = typer.Argument(..., help="A study's per-seed CSV (per_seed.csv, e.g. docs/standard-study.csv)."),
    mode: BaselineModeOption = typer.Option(BaselineModeOption.mean, "--baseline-mode", help=MODE_HELP),
) -> None:
    """Print the Markdown table (mean ± std, n, Δm's interval, paired difference with uniform, notes) of a per-seed
    CSV: the README's standard-study block, between its <!-- standard-study-table:start/end --> markers."""
    from taskbalance.results.seed_csv import render_seed_csv

    try:
        typer.echo(render_seed_csv(csv_file, mode.value), nl=False)
    except ResultsError as error:
        raise fail(error) from None


@results_app.command("collect")
def collect_command(
    runs: list[Path] = typer.Argument(..., help=RUNS_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="JSON file to write (a list of run results)."),
) -> None:
    """Gather several runs into one saved results file, usable wherever runs are expected."""
    try:
        collected = load_runs(runs)
    except ResultsError as error:
        raise fail(error) from None
    save_results(collected, out)
    typer.echo(f"wrote {len(collected)} runs to {out}")


def register(app: typer.Typer) -> None:
    """Add the ``results`` command group to the main app."""
    app.add_typer(results_app, name="results")
