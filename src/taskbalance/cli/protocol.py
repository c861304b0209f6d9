"""CLI group ``taskbalance protocol``: list the benchmarks of the method papers and run them into a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from taskbalance.cli.failure import ERROR, fail
from taskbalance.cli.options import PluginOption

console = Console()
protocol_app = typer.Typer(
    no_args_is_help=True, help="The method papers' benchmarks: NYUv2 / Cityscapes (MTAN protocol), CelebA, MultiMNIST."
)


def register(app: typer.Typer) -> None:
    """Add the ``protocol`` command group to the main app."""
    app.add_typer(protocol_app, name="protocol")


@protocol_app.command("list")
def list_command() -> None:
    """List the benchmark presets and their settings."""
    from taskbalance.protocols.presets import available_protocols, protocol_preset

    for name in available_protocols():
        preset = protocol_preset(name)
        s = preset.schedule
        console.print(
            f"[bold]{name}[/bold]: {preset.description}; {s.epochs} epochs, batch {s.batch_size}, Adam {s.lr:g}"
            + (f" halved at epoch {s.halve_at}" if s.halve_at else "")
            + f"; reports {preset.reporting.rule}"
        )


@protocol_app.command("check")
def check_command(
    name: Annotated[str, typer.Argument(help="benchmark: nyuv2-mtan, cityscapes, celeba, multimnist")],
    root: Annotated[Path, typer.Option(help="the dataset folder to check (read only)")],
) -> None:
    """Read every item of the benchmark's dataset and list each missing, corrupt or out-of-range file."""
    from taskbalance.protocols.check import check_protocol_data

    try:
        report = check_protocol_data(name, root)
    except ValueError as error:
        raise fail(error) from None
    for problem in report.problems:
        console.print(f"[red]{problem.path}[/red]: {problem.message}")
    console.print(f"{report.samples} items checked, {len(report.problems)} problem(s)")
    if not report.ok:
        raise typer.Exit(ERROR)


@protocol_app.command("run")
def run_command(
    name: Annotated[str, typer.Argument(help="benchmark: nyuv2-mtan, cityscapes, celeba, multimnist")],
    out: Annotated[Path, typer.Option(help="output folder: one run directory per method, report.md, report.csv")],
    method: Annotated[
        list[str] | None, typer.Option("--method", "-m", help="balancer name, repeatable (default: uniform)")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="method option: method.key=value (YAML value), repeatable"),
    ] = None,
    root: Annotated[Path | None, typer.Option(help="dataset folder (not needed with --cpu)")] = None,
    cpu: Annotated[bool, typer.Option("--cpu", help="the small CPU version on synthetic stand-in data")] = False,
    single_task: Annotated[
        bool | None,
        typer.Option(
            "--stl/--no-stl", help="train single-task baselines (default: when the benchmark has no hard-coded one)"
        ),
    ] = None,
    seed: int = 0,
    device: str = "cpu",
    resume: Annotated[
        bool, typer.Option("--resume", help="continue each run in --out from its last epoch checkpoint (finished and "
                           "checkpoint-less runs are trained from the start)")
    ] = False,
    plugins: PluginOption = None,
) -> None:
    """Train each method on the benchmark and print the papers' table, with Δm% in the AvgNorm paper's convention
    (higher is better) and the method papers' reported Δm converted to it."""
    from taskbalance.balancers import BalancerError
    from taskbalance.balancers.driver import TrainingDiverged
    from taskbalance.data import DataError
    from taskbalance.plugins import import_plugins
    from taskbalance.protocols.presets import protocol_preset
    from taskbalance.protocols.report import report_markdown
    from taskbalance.protocols.suite import run_suite
    from taskbalance.results import ResultsError
    from taskbalance.training.config import ConfigError, parse_override

    try:
        import_plugins(plugins or [])  # PluginError is a ValueError: one line below
        options: dict[str, dict[str, Any]] = {}
        for text in option or []:
            path, value = parse_override(text)
            if len(path) != 2:
                raise ConfigError(f"option {text!r} must look like method.key=value (e.g. famo.gamma=0.01)")
            options.setdefault(path[0], {})[path[1]] = value
        preset = protocol_preset(name, cpu=cpu)
        table = run_suite(preset, method or ["uniform"], out, root=root, method_options=options,
                          single_task=single_task, seed=seed, device=device, resume=resume)
    except (DataError, BalancerError, ResultsError, ConfigError, ValueError, TrainingDiverged) as error:
        raise fail(error) from None
    console.print(report_markdown(preset.description, table, preset.name), highlight=False, markup=False)
    console.print(f"report in {out / 'report.md'}")
