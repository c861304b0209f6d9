"""``taskbalance toy``: the two-objective toy benchmark of CAGrad / Nash-MTL / FAMO / IMGrad (see docs/toy.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from taskbalance.cli.failure import fail
from taskbalance.toy.presets import (
    DEFAULT_DTYPE,
    DEFAULT_MOVING_THRESHOLD,
    DEFAULT_TOLERANCE,
    DTYPES,
    PRESETS,
    SCALINGS,
    resolve_settings,
)

console = Console()
DEFAULT_OUT = Path("runs/toy")


def register(app: typer.Typer) -> None:
    """Add the ``toy`` command to the main app."""
    app.command("toy")(toy)


def toy(
    preset: str = typer.Option(
        "cagrad", help=f"Paper setting: {', '.join(PRESETS)} (scaling, starts, steps, methods)."
    ),
    methods: str | None = typer.Option(
        None,
        help='Comma-separated method specs replacing the preset\'s, e.g. "uniform,mgda,cagrad(c=0.5,max_norm=1.0)".',
    ),
    steps: int | None = typer.Option(None, min=0, help="Adam steps (default: the preset's)."),
    scaling: str | None = typer.Option(None, help=f"Loss scales: {', '.join(SCALINGS)} or 's1,s2'."),
    starts: str | None = typer.Option(None, help="Initial points 'x1,x2;x1,x2;...' (default: the preset's)."),
    tolerance: float = typer.Option(
        DEFAULT_TOLERANCE, min=0.0, help="Distance counted as reaching the Pareto set / optimum."
    ),
    moving_threshold: float = typer.Option(
        DEFAULT_MOVING_THRESHOLD,
        min=0.0,
        help="Distance over the last 1000 steps above which a start counts as still moving.",
    ),
    dtype: str | None = typer.Option(
        None,
        help=f"Arithmetic of x, losses, gradients and Adam: {', '.join(DTYPES)} (default {DEFAULT_DTYPE}, as the "
        "papers).",
    ),
    out: Path = typer.Option(DEFAULT_OUT, help="Output directory."),
    plugins: list[str] | None = typer.Option(
        None,
        "--plugin",
        metavar="MODULE",
        help="Import MODULE first: methods of one's own (docs/plugins.md), repeatable.",
    ),
) -> None:
    """Run the toy problem from the published initial points and write trajectories.png and results.{md,csv,json}."""
    import torch  # here, not at the top: `taskbalance --help` must not import torch

    from taskbalance.balancers import BalancerError
    from taskbalance.plugins import PluginError, import_plugins
    from taskbalance.toy.outputs import write_outputs
    from taskbalance.toy.problem import ToyProblem
    from taskbalance.toy.report import summarize, table_rows
    from taskbalance.toy.runner import run_toy

    try:
        import_plugins(plugins or [])
    except PluginError as error:
        raise fail(error) from None
    try:
        settings = resolve_settings(preset, methods=methods, steps=steps, scaling=scaling, starts=starts, dtype=dtype)
    except ValueError as error:
        raise fail(error) from None
    problem = ToyProblem(settings.scales)
    labels = ", ".join(spec.label for spec in settings.methods)
    console.print(
        f"toy preset [bold]{settings.preset}[/]: {labels}; {len(settings.starts)} starts, {settings.steps} steps, "
        f"{settings.dtype}"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("Adam steps", total=settings.steps)
            run = run_toy(
                problem,
                settings.methods,
                torch.tensor(settings.starts, dtype=torch.float64),
                settings.steps,
                on_step=lambda: progress.advance(task),
                dtype=getattr(torch, settings.dtype),
            )
    except BalancerError as error:  # bad method options are found when the balancers are built, before any step
        raise fail(error) from None
    outcomes = summarize(run, problem, tolerance, moving_threshold)
    header, rows = table_rows(outcomes)
    table = Table(*header, title=f"toy {settings.preset}: {run.steps} steps in {run.total_seconds:.1f} s")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for message in run.failures.values():
        console.print(f"[red]failed[/]: {message}")
    paths = write_outputs(out, settings, run, problem, outcomes, tolerance, moving_threshold)
    console.print("wrote " + ", ".join(str(p) for p in paths))
