"""CLI command ``study``: run an experiment of the paper (every arm over seeds) locally, in parallel, or on SLURM."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from taskbalance.cli.failure import INTERRUPTED, USAGE, fail

console = Console()


class ExecutorName(str, Enum):
    """Where the runs execute (see taskbalance.study.executors)."""

    local = "local"
    slurm = "slurm"
    submitit_local = "submitit-local"


def study_command(
    preset: Annotated[
        str, typer.Argument(help="study preset name (quick, standard, methods, noise, nyud-resnet18, ...) or YAML file")
    ],
    out: Annotated[Path | None, typer.Option(help="study directory (default: runs/<preset>)")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="override a config key of every run: key=value (YAML value), repeatable"),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(help="run every arm with seeds 0..N-1 (default: the preset's seeds)")
    ] = None,
    plugins: Annotated[
        list[str] | None,
        typer.Option(
            "--plugin",
            metavar="MODULE",
            help="import MODULE in every run: methods of one's own for the study's methods (docs/plugins.md), "
            "repeatable",
        ),
    ] = None,
    methods: Annotated[
        list[str] | None,
        typer.Option("--method", metavar="NAME", help="add an arm for this method (default options), repeatable"),
    ] = None,
    only: Annotated[list[str] | None, typer.Option(help="run only these arms (plus the single-task ones)")] = None,
    plan_only: Annotated[bool, typer.Option("--plan", help="list the runs and their status, train nothing")] = False,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="write the report of the finished runs, train nothing")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            min=1,
            help="runs at once on this machine; changes the wall time only (every run keeps the study's threads, "
            "default 1)",
        ),
    ] = 1,
    executor: Annotated[
        ExecutorName, typer.Option(help="local processes, SLURM jobs (submitit), or submitit's local executor")
    ] = ExecutorName.local,
    partition: Annotated[str | None, typer.Option(help="SLURM partition")] = None,
    gpus_per_job: Annotated[int, typer.Option(min=0, help="GPUs per SLURM job")] = 1,
    cpus_per_job: Annotated[
        int, typer.Option(min=1, help="CPUs per SLURM job (its torch threads: --set threads=N)")
    ] = 8,
    time_min: Annotated[int, typer.Option("--time", min=1, help="SLURM time limit per job, minutes")] = 240,
    array_parallelism: Annotated[int, typer.Option(min=1, help="SLURM jobs of one array running at once")] = 32,
    log_folder: Annotated[Path | None, typer.Option(help="submitit's job folder (default: <out>/jobs)")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Run an experiment of the paper: single-task baselines, uniform, grid search, each method, over seeds; then
    the report. Finished runs are kept; the same command resumes an interrupted study."""
    from taskbalance.balancers import BalancerError
    from taskbalance.protocols.presets import available_protocols
    from taskbalance.results import ResultsError
    from taskbalance.study import load_study, plan, run_study
    from taskbalance.study.executors import ClusterOptions, build_backend
    from taskbalance.study.plan import expected_config
    from taskbalance.study.schedule import StudyIncomplete
    from taskbalance.study.staleness import plan_status
    from taskbalance.training import ConfigError, RunDir

    if preset in available_protocols():
        raise fail(
            f"{preset!r} is a method-paper benchmark with its own protocol: run "
            f"`taskbalance protocol run {preset} --root DATA -m METHOD ...` (--cpu for the stand-in data)",
            USAGE,
        )
    target = out or Path("runs") / Path(preset).stem
    try:
        spec = load_study(preset, overrides or [], seeds, plugins or [], methods or [])
        if plan_only:
            for run in plan(spec):
                status = plan_status(RunDir(target / run.name), expected_config(run, spec, target))
                console.print(f"{run.name:36s} {run.config.method.name:12s} {status}", soft_wrap=True)
            return
        if report_only:
            run_study(spec, target, console=console, only=only, train=False)
            return
        cluster = ClusterOptions(
            log_folder or target / "jobs", partition, gpus_per_job, cpus_per_job, time_min, array_parallelism
        )
        backend = build_backend(executor.value, jobs, console, progress, cluster)
        run_study(spec, target, console=console, show_progress=progress, only=only, executor=backend)
    except (StudyIncomplete, ConfigError, BalancerError, ResultsError,
            FileNotFoundError, ValueError, RuntimeError) as error:
        raise fail(error) from None
    except KeyboardInterrupt:
        raise fail("interrupted; the same command continues the study (finished runs are kept)", INTERRUPTED) from None


def register(app: typer.Typer) -> None:
    """Add ``study`` to the main app."""
    app.command("study")(study_command)
