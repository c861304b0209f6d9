"""CLI commands ``train`` and ``plot`` (``study`` is in cli/study.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()

SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override a config key: key=value (YAML value), repeatable")]


def _fail(error: Exception, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/bold red] {error}")
    return typer.Exit(code)


def _user_errors() -> tuple[type[Exception], ...]:
    from taskbalance.balancers import BalancerError
    from taskbalance.training import ConfigError, RunExistsError, TrainingDiverged

    return (ConfigError, RunExistsError, TrainingDiverged, BalancerError, FileNotFoundError, ValueError)


def train_command(
    config: Annotated[Optional[str], typer.Argument(help="YAML config file, or the name of a packaged preset (e.g. quick)")] = None,
    overrides: SetOption = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default: runs/train/<name>)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last checkpoint")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    list_presets: Annotated[bool, typer.Option("--list", help="list the packaged training presets and exit")] = False,
) -> None:
    """Train one model: balancer, diagnostics, checkpoints, final evaluation (results.json) in a run directory."""
    from taskbalance.training import available_presets, load_config, train

    if list_presets:
        console.print("\n".join(available_presets()))
        return
    if config is None:
        raise _fail(ValueError("give a config file or preset name (taskbalance train --list shows the presets)"), 2)
    target = out
    try:
        cfg = load_config(config, overrides or [])
        target = out or Path("runs") / "train" / cfg.name
        result = train(cfg, target, resume=resume, console=console, show_progress=progress)
    except _user_errors() as error:
        raise _fail(error) from None
    except KeyboardInterrupt:
        raise _fail(KeyboardInterrupt(f"interrupted; continue with: taskbalance train {config} --out {target} --resume"), 130) from None
    if result is not None:
        console.print(f"results written to {target / 'results.json'}")
        for task, metrics in result.metrics.items():
            console.print(f"  {task}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


def plot_command(
    runs: Annotated[list[Path], typer.Argument(help="run directories (with diagnostics.jsonl)")],
    out: Annotated[Path, typer.Option(help="folder for the figures")] = Path("figures"),
    points: Annotated[int, typer.Option(min=2, help="points per curve (windowed means)")] = 50,
) -> None:
    """Draw the gradient-diagnostics figures (paper Figs. 6-16 style) for one or several runs."""
    from taskbalance.plots import plot_runs

    try:
        written = plot_runs(runs, out, points)
    except (FileNotFoundError, ValueError) as error:
        raise _fail(error) from None
    for path in written:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``plot`` to the main app."""
    app.command("train")(train_command)
    app.command("plot")(plot_command)
