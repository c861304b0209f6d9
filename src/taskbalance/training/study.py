"""A study: an experiment of the paper expanded into runs, run (skipping finished ones), and reported.

A study preset (``configs/study-<name>.yaml``) names a training preset (``base``), overrides for every run
(``set``), the MTL methods, a grid of static weights, whether to add URL and the Fig. 6 feature distance, and
optional data ``variants`` (Table V: label noise, fewer scans or scenes), each of which repeats the experiment.

Runs, per variant (prefix ``<variant>/`` when there are variants):
``stl-<task>`` (single-task baselines) → ``uniform``, ``grid-<i>``, each method, ``url`` (distillation from the
single-task runs). After the single-task runs, their validation metrics become every MTL run's ``baseline``,
so model selection maximises validation Δm against single-task; the grid-search arm is the grid point with
the best validation Δm. A finished run (``results.json``) is never re-run; an interrupted one resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from taskbalance.training.config import (
    ConfigError,
    RunConfig,
    apply_settings,
    deep_merge,
    format_validation_error,
    parse_override,
    validate_config,
)
from taskbalance.training.presets import load_raw, read_yaml, resolve_path
from taskbalance.training.rundir import RunDir


class MethodEntry(BaseModel):
    """One MTL method of a study."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    label: str | None = Field(None, description="run name (default: the method name)")
    options: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict, description="dotted-key overrides for this run only")

    @property
    def run_name(self) -> str:
        return self.label or self.name


class StudySpec(BaseModel):
    """A study preset."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    base: str = Field(description="training preset (or YAML path) every run starts from")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted-key overrides for every run")
    single_task: bool = True
    uniform: bool = True
    methods: list[MethodEntry] = Field(default_factory=list)
    grid: list[dict[str, float]] = Field(default_factory=list, description="static weight sets (grid search)")
    url: bool = False
    feature_distance: bool = Field(False, description="measure every MTL run's feature distance to the STL models (Fig. 6)")
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict, description="name -> dotted-key overrides (Table V)")
    diagnostics_runs: list[str] | None = Field(None, description="runs drawn in the diagnostics figures (default: all MTL runs)")


@dataclass(frozen=True)
class PlannedRun:
    """A run of the study, before the single-task baselines are known."""

    name: str
    variant: str
    kind: str  # "stl", "mtl" or "url"
    raw: dict[str, Any]

    @property
    def seed(self) -> int:
        """The run's seed (from its config)."""
        return int(self.raw.get("seed", 0))

    @property
    def arm(self) -> str:
        """The arm the run belongs to, as the report groups runs: the run's name without its seed (the runs of
        one arm differ only in their seed). Used by training/report.py."""
        return self.name


def load_study(name_or_path: str | Path, overrides: list[str] | None = None) -> StudySpec:
    """Read and validate a study preset; ``overrides`` (``key=value``) go into its ``set``."""
    path = resolve_path(name_or_path, study=True)
    raw = read_yaml(path)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid study {path}: {format_validation_error(error)}") from None
    if overrides:
        parsed = {".".join(path): value for path, value in map(parse_override, overrides)}
        spec = spec.model_copy(update={"set": {**spec.set, **parsed}})
    return spec


def plan(spec: StudySpec) -> list[PlannedRun]:
    """Every run of the study, single-task runs first, with its raw config (validated here)."""
    base = apply_settings(load_raw(spec.base), spec.set)
    variants = spec.variants or {"": {}}
    runs: list[PlannedRun] = []
    for variant, variant_set in variants.items():
        raw = apply_settings(base, variant_set)
        tasks = list(raw.get("tasks") or [])
        prefix = f"{variant}/" if variant else ""

        def add(name: str, kind: str, config: dict[str, Any]) -> None:
            config = deep_merge(config, {"name": f"{prefix}{name}"})
            validate_config(config)
            runs.append(PlannedRun(f"{prefix}{name}", variant, kind, config))

        if spec.single_task:
            for task in tasks:
                add(f"stl-{task}", "stl", {**raw, "tasks": [task], "single_task": True, "method": {"name": "uniform"}})
        if spec.uniform:
            add("uniform", "mtl", {**raw, "method": {"name": "uniform"}})
        for index, weights in enumerate(spec.grid, start=1):
            add(f"grid-{index}", "grid", {**raw, "method": {"name": "static", "options": {"weights": weights}}})
        for entry in spec.methods:
            config = {**raw, "method": {"name": entry.name, "options": entry.options}}
            add(entry.run_name, "mtl", apply_settings(config, entry.set))
        if spec.url:
            add("url", "url", {**raw, "method": {"name": "uniform"}})
    return runs


def _stl_name(variant: str, task: str) -> str:
    return f"{variant}/stl-{task}" if variant else f"stl-{task}"


def finalize(run: PlannedRun, spec: StudySpec, out: Path) -> RunConfig:
    """The run's config once the single-task runs exist: baseline for selection, URL teachers, feature distance."""
    raw = dict(run.raw)
    if run.kind != "stl" and spec.single_task:
        tasks = list(raw["tasks"])
        stl_dirs = {t: out / _stl_name(run.variant, t) for t in tasks}
        baseline = {}
        for task, path in stl_dirs.items():
            record = RunDir(path).best_validation_record()
            if record is not None:
                baseline[task] = record["metrics"][task]
        if len(baseline) == len(tasks):
            raw["baseline"] = baseline
        if run.kind == "url":
            raw["distill"] = {"mode": "distill", "teachers": {t: str(p) for t, p in stl_dirs.items()}}
        elif spec.feature_distance:
            raw["distill"] = {"mode": "measure", "teachers": {t: str(p) for t, p in stl_dirs.items()}}
    return validate_config(raw)


def run_study(spec: StudySpec, out: Path, console: Console | None = None, show_progress: bool = True,
              only: list[str] | None = None) -> dict[str, Any]:
    """Run every unfinished run of the study into ``out/<run>`` and write the report; returns the report data."""
    from taskbalance.training.loop import train
    from taskbalance.training.report import write_report

    console = console or Console()
    started = time.perf_counter()
    runs = plan(spec)
    if only:
        runs = [r for r in runs if r.name in only or r.kind == "stl"]
    trained = 0
    for index, run in enumerate(runs, start=1):
        run_dir = RunDir(out / run.name)
        if run_dir.is_finished():
            console.print(f"[dim][{index}/{len(runs)}] {run.name}: finished, skipped[/dim]")
            continue
        console.print(f"[bold][{index}/{len(runs)}] {run.name}[/bold]")
        config = finalize(run, spec, out)
        train(config, run_dir.root, resume=run_dir.config.is_file(), console=console, show_progress=show_progress)
        trained += 1
    redraw = trained > 0 or not (out / "report.md").is_file()
    report = write_report(spec, runs, out, console=console, draw_figures=redraw)
    wall = time.perf_counter() - started
    console.print(f"study finished in {wall / 60:.1f} min (this invocation); report in {out / 'report.md'}")
    return report
