"""Running a study's plan: skip what is finished, set aside what is stale, execute the rest in dependency order.

A run is submitted once the runs it ``needs`` (its seed's single-task runs) are finished. Seed by seed: a seed's
single-task runs, then its other runs, with later seeds' runs filling free slots, so a study stopped early has whole
seeds. Up to the backend's ``capacity`` runs execute at once. A failed run is reported by name and the runs that
need it are skipped; everything else goes on, and the next invocation retries what is not finished (resuming from
its last checkpoint). Finished runs (``results.json``) are never re-run, so adding a seed runs only the new seed.
Progress and per-run logs: ``<out>/logs/<run>.log``; the study's wall time is printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from taskbalance.results import ResultsError
from taskbalance.study.curves import plot_validation_curves
from taskbalance.study.executors import Backend, Handle, RunOutcome, RunTask, build_backend
from taskbalance.study.plan import PlannedRun, StudySpec, describe_arms, expected_config, finalize, plan
from taskbalance.study.report import write_report
from taskbalance.study.staleness import set_aside_if_stale, stale_differences
from taskbalance.training.config import ConfigError
from taskbalance.training.rundir import RunDir


class StudyIncomplete(RuntimeError):
    """Some runs failed (named in the message); the finished ones are kept and the same command retries the rest."""


@dataclass
class SchedulerState:
    """What the scheduler knows: runs waiting, running, finished in this invocation, failed, blocked."""

    waiting: list[PlannedRun]
    running: dict[int, tuple[PlannedRun, Handle]] = field(default_factory=dict)
    done: list[RunOutcome] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _ready(run: PlannedRun, out: Path) -> bool:
    return all(RunDir(out / name).is_finished() for name in run.needs)


def _blocked_by(run: PlannedRun, failed: dict[str, str]) -> str | None:
    return next((name for name in run.needs if name in failed), None)


def _task(run: PlannedRun, spec: StudySpec, out: Path) -> RunTask:
    return RunTask(run.name, str(out / run.name), finalize(run, spec, out), str(out / "logs" / f"{run.name}.log"))


def _outcome(run: PlannedRun, handle: Handle) -> RunOutcome:
    try:
        return handle.result()
    except Exception as error:  # the job or worker process died: killed, out of memory, time limit
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return RunOutcome(run.name, 0.0, f"job ended without a result ({type(error).__name__}: {reason})")


def execute(spec: StudySpec, todo: Sequence[PlannedRun], out: Path, backend: Backend, console: Console,
            show_bar: bool) -> SchedulerState:
    """Execute ``todo`` (plan order, single-task runs first) on ``backend``; returns what happened."""
    seeds = list(dict.fromkeys([*spec.seeds, *(run.seed for run in todo)]))
    state = SchedulerState(sorted(todo, key=lambda r: (seeds.index(r.seed), r.kind != "stl")))  # stable: plan order
    bar = Progress(TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[running]}"), console=console, disable=not show_bar, transient=False)
    with bar:
        counter = bar.add_task("runs", total=len(todo), running="")
        while state.waiting or state.running:
            for run in [r for r in state.waiting if _blocked_by(r, state.failed)]:
                state.waiting.remove(run)
                state.failed[run.name] = f"not run: {_blocked_by(run, state.failed)} failed"
                bar.advance(counter)
            free = backend.capacity - len(state.running)
            batch = [r for r in state.waiting if _ready(r, out)][:max(free, 0)]
            if batch:
                for run in batch:
                    state.waiting.remove(run)
                handles = backend.submit([_task(r, spec, out) for r in batch])
                state.running.update({id(h): (r, h) for r, h in zip(batch, handles)})
            finished = [(key, run, handle) for key, (run, handle) in state.running.items() if handle.done()]
            if not finished:
                if not state.running:  # nothing runs and nothing is ready: a dependency is missing
                    for run in state.waiting:
                        missing = ", ".join(n for n in run.needs if not RunDir(out / n).is_finished())
                        state.failed[run.name] = f"not run: needs {missing}"
                    state.waiting.clear()
                    break
                bar.update(counter, running=", ".join(r.name for r, _ in state.running.values()))
                time.sleep(backend.poll_seconds)
                continue
            for key, run, handle in finished:
                del state.running[key]
                outcome = _outcome(run, handle)
                bar.advance(counter)
                if outcome.error is None:
                    state.done.append(outcome)
                    console.print(f"[green]done[/green] {run.name} ({outcome.seconds / 60:.1f} min)")
                else:
                    state.failed[run.name] = outcome.error
                    console.print(f"[bold red]FAILED[/bold red] {run.name}: {outcome.error} "
                                  f"(log: {out / 'logs' / run.name}.log)")
                if outcome.stopped:  # a preemption or stop signal: finish what runs, start nothing new
                    for waiting in state.waiting:
                        state.failed[waiting.name] = "not run: the study was stopped by a signal"
                        bar.advance(counter)
                    state.waiting.clear()
    return state


def _current_runs(spec: StudySpec, runs: Sequence[PlannedRun], out: Path, console: Console,
                  set_aside: bool) -> list[PlannedRun]:
    """The runs whose directories hold no run of another config: stale ones are moved aside (``set_aside``) or left
    out and named."""
    current = []
    for run in runs:
        planned = expected_config(run, spec, out)
        if set_aside:
            stale = set_aside_if_stale(run.name, RunDir(out / run.name), planned)
            if stale is not None:
                console.print(f"[yellow]stale[/yellow] {stale.describe()}")
        else:
            differences, _ = stale_differences(RunDir(out / run.name), planned)
            if differences:
                console.print(f"[yellow]stale[/yellow] {run.name}: trained under another config "
                              f"({', '.join(differences[:6])}); left out of the report (running the study trains it "
                              "anew)")
                continue
        current.append(run)
    return current


def _report(spec: StudySpec, runs: Sequence[PlannedRun], out: Path, console: Console, redraw: bool) -> dict[str, Any]:
    curves = out / "figures" / "validation_curves.png"
    if redraw and plot_validation_curves(out, runs, curves) is not None:
        console.print(f"validation curves: {curves}")
    try:
        return write_report(spec, list(runs), out, console=console, draw_figures=redraw, arms=describe_arms(list(runs)))
    except ResultsError as error:  # e.g. no single-task run has finished yet
        console.print(f"[yellow]no report:[/yellow] {error}")
        return {}


def run_plan(spec: StudySpec, runs: Sequence[PlannedRun], out: Path, console: Console, show_progress: bool = True,
             executor: Backend | None = None, train: bool = True) -> dict[str, Any]:
    """Set aside stale runs, execute the unfinished ones, write the report (of whatever is finished). With
    ``train=False`` only the report is written, of the finished runs that match the plan."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    runs = _current_runs(spec, runs, out, console, set_aside=train)
    todo = [r for r in runs if not RunDir(out / r.name).is_finished()]
    console.print(f"{len(runs)} runs ({len(runs) - len(todo)} finished, {len(todo)} to run) in {out}")
    if not train:
        return _report(spec, runs, out, console, redraw=True)
    backend = executor or build_backend("local", 1, console, show_progress)
    try:
        state = execute(spec, todo, out, backend, console, show_bar=show_progress and backend.capacity > 1)
    finally:
        backend.close()
    report = _report(spec, runs, out, console, redraw=bool(state.done) or not (out / "report.md").is_file())
    wall = time.perf_counter() - started
    console.print(f"study: {len(state.done)} runs trained, {len(state.failed)} failed, {wall / 60:.1f} min wall "
                  f"(this invocation); report in {out / 'report.md'}")
    if state.failed:
        names = "; ".join(f"{name}: {why}" for name, why in state.failed.items())
        raise StudyIncomplete(f"{len(state.failed)} runs did not finish ({names}); the same command retries them")
    return report


def run_study(spec: StudySpec, out: Path, console: Console | None = None, show_progress: bool = True,
              only: list[str] | None = None, executor: Backend | None = None, train: bool = True) -> dict[str, Any]:
    """Run every unfinished run of the study into ``out`` and write the report; returns the report data. With
    ``train=False``, only write the report of the finished runs (a study still running, or jobs still queued).

    ``executor`` is a :class:`~taskbalance.study.executors.Backend` (default: one run at a time in this
    process). Runs whose stored config differs from the plan are moved aside first (see
    :mod:`taskbalance.study.staleness`); failed runs are reported by name and retried by the next invocation.
    """
    runs = plan(spec)
    if only:
        unknown = sorted(set(only) - {r.arm for r in runs})
        if unknown:
            raise ConfigError(f"--only names arms the study does not have: {', '.join(unknown)}")
        runs = [r for r in runs if r.arm in only or r.kind == "stl"]
    return run_plan(spec, runs, out, console or Console(), show_progress=show_progress, executor=executor, train=train)
