"""``taskbalance data``: export the synthetic scenes in a real layout, check a dataset folder, describe a dataset."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from taskbalance.cli.failure import ERROR, fail
from taskbalance.data.layouts import CHECKABLE_DATASETS, EXPORT_LAYOUTS

console = Console(soft_wrap=True)  # file paths stay on one line
data_app = typer.Typer(
    no_args_is_help=True, help="Datasets: export the synthetic scenes, check folders, describe splits.")


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the main app."""
    app.add_typer(data_app, name="data")


def _resolution(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HxW such as 64x80, got {text!r}") from None
    if height < 8 or width < 8:
        raise typer.BadParameter("both sizes must be at least 8 pixels")
    return height, width


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


@data_app.command("export")
def export(
    source: str = typer.Argument("synthetic", help="What to export (only 'synthetic')."),
    layout: str = typer.Option(..., help=f"On-disk layout: {', '.join(EXPORT_LAYOUTS)}."),
    out: Path = typer.Option(..., help="New or empty output folder."),
    num_scenes: int | None = typer.Option(None, min=1, help="Scenes per split (default: 24 train, 8 test)."),
    views_per_scene: int = typer.Option(16, min=1, help="Views ('scans') per scene."),
    resolution: str = typer.Option("64x80", help="Image size HxW."),
    seed: int = typer.Option(0, help="Generator seed."),
) -> None:
    """Write the synthetic train and test scenes in a real dataset's layout (train and test lists included)."""
    from taskbalance.data import DataError
    from taskbalance.data.export import export_synthetic

    if source != "synthetic":
        raise typer.BadParameter(f"only 'synthetic' can be exported, got {source!r}")
    try:
        with _progress() as progress:
            job = progress.add_task(f"export {layout}", total=None)
            summary = export_synthetic(
                out,
                layout,  # type: ignore[arg-type]
                progress=lambda stage, done, total: progress.update(
                    job, description=f"{layout}: {stage}", completed=done, total=total),
                num_scenes=num_scenes,
                views_per_scene=views_per_scene,
                resolution=_resolution(resolution),
                seed=seed,
            )
    except DataError as error:
        raise fail(error) from None
    for split_file, count in summary.samples.items():
        console.print(f"{summary.out / split_file}: {count} samples")
    console.print(f"[green]wrote[/green] {summary.out} ({summary.layout} layout)")


@data_app.command("check")
def check(
    root: Path = typer.Argument(..., help="Dataset folder (read only)."),
    dataset: str = typer.Option(..., help=f"Dataset: {', '.join(CHECKABLE_DATASETS)}."),
    split: list[str] | None = typer.Option(None, help="Split(s) to check (default: all)."),
    limit: int = typer.Option(50, min=1, help="Problems to list (all are counted)."),
) -> None:
    """List missing files, corrupt images, out-of-range labels and size mismatches; exit 1 when any is found."""
    from taskbalance.data import DataError
    from taskbalance.data.check import check_dataset

    try:
        with _progress() as progress:
            job = progress.add_task(f"check {root}", total=None)
            report = check_dataset(
                root, dataset, tuple(split) if split else None,
                lambda done, total: progress.update(job, completed=done, total=total),
            )
    except DataError as error:
        raise fail(error) from None
    console.print(f"{report.dataset} ({report.layout} layout) at {report.root}: {report.samples} samples checked")
    if report.ok:
        console.print("[green]no problems found[/green]")
        return
    for problem in report.problems[:limit]:
        console.print(problem.message if problem.path in problem.message else f"{problem.path}: {problem.message}")
    listed = f", first {limit} listed" if len(report.problems) > limit else ""
    console.print(f"[red]{len(report.problems)} problem(s)[/red]{listed}")
    raise typer.Exit(ERROR)


@data_app.command("info")
def info(
    dataset: str = typer.Argument("synthetic", help="synthetic, nyud, pascal or replica."),
    split: str = typer.Option("train", help="Split to describe."),
    root: Path | None = typer.Option(None, help="Dataset folder (real datasets)."),
) -> None:
    """Describe a dataset split: tasks, class counts, size, layout (the synthetic scenes are not rendered)."""
    from taskbalance.data import DataError
    from taskbalance.data.describe import describe_dataset

    try:
        description, items = describe_dataset(dataset, split, root=root)
    except DataError as error:
        raise fail(error) from None
    table = Table("field", "value")
    table.add_row("items", str(items))
    for name in ("name", "tasks", "num_classes", "edge_max_dist", "has_val_split", "metadata"):
        table.add_row(name, str(getattr(description, name)))
    console.print(table)
