"""CLI commands ``train`` and ``plot`` (``study`` is in cli/study.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from taskbalance.cli.failure import INTERRUPTED, PREEMPTED, USAGE, fail
from taskbalance.cli.options import PluginOption, SetOption

console = Console()



def _user_errors() -> tuple[type[Exception], ...]:
    from taskbalance.atomic import WriteError
    from taskbalance.balancers import BalancerError
    from taskbalance.training import ConfigError, RunExistsError, TrainingDiverged
    from taskbalance.training.rundir import RunLockedError

    return (ConfigError, RunExistsError, RunLockedError, TrainingDiverged, BalancerError, FileNotFoundError, ValueError,
            WriteError)


def train_command(
    config: Annotated[str | None, typer.Argument(
        help="YAML config file, or the name of a packaged preset (e.g. quick); with --resume --out RUN, RUN's own "
        "config.yaml by default")] = None,
    overrides: SetOption = None,
    plugins: PluginOption = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default: runs/train/<name>)")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue the run in --out from its last checkpoint")] = False,
    resume_if_exists: Annotated[bool, typer.Option(
        "--resume-if-exists",
        help="continue the run in --out if there is one, else start it (restarts, requeues)")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    list_presets: Annotated[bool, typer.Option("--list", help="list the packaged training presets and exit")] = False,
) -> None:
    """Train one model: balancer, diagnostics, checkpoints, final evaluation (results.json) in a run directory."""
    from taskbalance.training import RunDir, available_presets, load_config, train
    from taskbalance.training.preemption import Preempted
    from taskbalance.training.rundir import run_dir_for

    if list_presets:
        console.print("\n".join(available_presets()))
        return
    if config is None and not (resume and out is not None):
        raise fail("give a config file or preset name (taskbalance train --list shows the presets), "
                   "or --resume --out RUN to continue a run", USAGE)
    target = out
    try:
        source: str | Path | None = config
        if source is None:
            assert out is not None  # without a config: --resume --out RUN (refused above otherwise)
            source = RunDir(out).config
            if not source.is_file():
                raise ValueError(f"{out} is not a run directory (no config.yaml); give the config to start a run there")
        cfg = load_config(source, overrides or [], plugins or [])
        target = out or run_dir_for(Path("runs") / "train", cfg.name)
        if resume and not resume_if_exists and not RunDir(target).config.is_file():
            raise ValueError(f"{target} holds no run to resume (no config.yaml); start it without --resume, or pass "
                             "--resume-if-exists to start or continue it")
        result = train(cfg, target, resume=resume or resume_if_exists, console=console, show_progress=progress)
    except _user_errors() as error:
        raise fail(error) from None
    except Preempted as stop:  # a signal asked for it: not an error, but the run is not finished
        raise fail(f"{stop}; continue with: taskbalance train --resume --out {target}", PREEMPTED, "stopped") from None
    except KeyboardInterrupt:
        hint = f"; continue with: taskbalance train --resume --out {target}" if target is not None else ""
        raise fail(f"interrupted{hint}", INTERRUPTED) from None
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
        raise fail(error) from None
    for path in written:
        console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``plot`` to the main app."""
    app.command("train")(train_command)
    app.command("plot")(plot_command)
