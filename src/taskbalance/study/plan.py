"""A study: an experiment of the paper expanded into runs (every arm once per seed), run, and reported.

A study preset (``configs/study-<name>.yaml``) names a training preset (``base``), overrides for every run
(``set``), the seeds, the MTL methods, a grid of static weights, whether to add URL and the Fig. 6 feature
distance, and optional data ``variants`` (Table V: label noise, fewer scans or scenes), each of which repeats the
experiment.

Runs, per variant (prefix ``<variant>/`` when there are variants) and per seed, in
``<out>/[<variant>/]<arm>/seed-<seed>``: the arms are ``stl-<task>`` (single-task baselines), ``uniform``,
``grid-<i>``, each method and ``url`` (distillation from the same seed's single-task runs). The seed sets the
initialisation, the data order, the augmentation and the method's own random numbers. Once a seed's single-task
runs are finished, their validation metrics become the ``baseline`` of that seed's MTL runs, so model selection
maximises validation Δm against single-task. Running them is :mod:`taskbalance.study.schedule`'s job
(:func:`~taskbalance.study.schedule.run_study`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taskbalance.plugins import merge_plugins
from taskbalance.training.config import (
    ConfigError,
    DistillConfig,
    RunConfig,
    add_plugins,
    apply_settings,
    deep_merge,
    format_validation_error,
    parse_override,
    validate_config,
)
from taskbalance.training.presets import load_raw, read_yaml, resolve_path
from taskbalance.training.rundir import RunDir

#: Torch threads of a study's runs when neither its base preset nor its ``set`` fixes them.
STUDY_THREADS = 1


class MethodEntry(BaseModel):
    """One MTL method of a study."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    label: str | None = Field(None, description="arm name (default: the method name)")
    options: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict, description="dotted-key overrides for this arm only")

    @property
    def arm(self) -> str:
        return self.label or self.name


class StudySpec(BaseModel):
    """A study preset."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    base: str = Field(description="training preset (or YAML path) every run starts from")
    plugins: list[str] = Field(default_factory=list,
                               description="modules with methods of one's own, in every run's config")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted-key overrides for every run")
    seeds: list[int] = Field(default_factory=lambda: [0], description="every arm runs once per seed")
    single_task: bool = True
    uniform: bool = True
    methods: list[MethodEntry] = Field(default_factory=list)
    grid: list[dict[str, float]] = Field(default_factory=list, description="static weight sets (grid search)")
    url: bool = False
    feature_distance: bool = Field(
        False, description="measure every MTL run's feature distance to the STL models (Fig. 6)")
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="name -> dotted-key overrides (Table V)")
    diagnostics_runs: list[str] | None = Field(
        None, description="arms drawn in the diagnostics figures (default: all MTL arms)")
    equivalence_margin: float = Field(2.0, gt=0, allow_inf_nan=False, description=(
        "δ in Δm points, fixed before the study runs: the equivalence margin of claim (b) (AvgNorm − grid within ±δ), "
        "the non-inferiority margin of claim (a) and the difference every power statement refers to"))
    delta_m_baseline: Literal["mean", "per-seed"] = Field("mean", description=(
        "Δm's single-task reference in the report: the mean over seeds (the paper's fixed reference) or each seed's "
        "own single-task runs"))

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, at least one, got {seeds}")
        return seeds


@dataclass(frozen=True)
class PlannedRun:
    """A run of the study, before the single-task baselines are known.

    ``arm`` is what the report groups by (``[<variant>/]uniform``); the runs of one arm differ only in ``seed``.
    ``config`` is the run's config, validated once when the study is planned (:func:`expected_config` derives the
    config it trains with from it). ``needs`` names the runs whose results this one reads (its seed's single-task
    runs), which run first.
    """

    arm: str
    seed: int
    variant: str
    kind: str  # "stl", "mtl", "grid" or "url"
    config: RunConfig
    needs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The run's path inside the study folder."""
        return run_name(self.arm, self.seed)


def run_name(arm: str, seed: int) -> str:
    """``<arm>/seed-<seed>``: where a run of an arm lives inside the study folder."""
    return f"{arm}/seed-{seed}"


def stl_arm(variant: str, task: str) -> str:
    """The single-task arm of ``task`` (in ``variant``)."""
    return f"{variant}/stl-{task}" if variant else f"stl-{task}"


def load_study(name_or_path: str | Path, overrides: list[str] | None = None, seeds: int | None = None,
               plugins: list[str] | None = None, methods: list[str] | None = None) -> StudySpec:
    """Read and validate a study preset; ``overrides`` (``key=value``) go into its ``set``; ``seeds=N`` replaces
    its seeds by 0..N-1; ``plugins`` (``--plugin``) join its ``plugins``; ``methods`` (``--method``) add one arm
    each, with the method's default options."""
    path = resolve_path(name_or_path, study=True)
    raw = read_yaml(path)
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {seeds}")
        raw["seeds"] = list(range(seeds))
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid study {path}: {format_validation_error(error)}") from None
    if overrides:
        parsed = {".".join(path): value for path, value in map(parse_override, overrides)}
        spec = spec.model_copy(update={"set": {**spec.set, **parsed}})
    if plugins:
        spec = spec.model_copy(update={"plugins": merge_plugins(spec.plugins, plugins)})
    if methods:
        arms = {entry.arm for entry in spec.methods} | ({"uniform"} if spec.uniform else set())
        taken = [name for name in methods if name in arms]
        if taken:
            raise ConfigError(f"--method {taken[0]}: the study already has an arm named {taken[0]!r}")
        added = [MethodEntry(name=name) for name in dict.fromkeys(methods)]
        spec = spec.model_copy(update={"methods": [*spec.methods, *added]})
    return spec


def _arms(spec: StudySpec, raw: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(arm, kind, config) of one variant, single-task arms first."""
    arms: list[tuple[str, str, dict[str, Any]]] = []
    if spec.single_task:
        for task in raw.get("tasks") or []:
            single = {**raw, "tasks": [task], "single_task": True, "method": {"name": "uniform"}}
            arms.append((f"stl-{task}", "stl", single))
    if spec.uniform:
        arms.append(("uniform", "mtl", {**raw, "method": {"name": "uniform"}}))
    for index, weights in enumerate(spec.grid, start=1):
        arms.append((f"grid-{index}", "grid", {**raw, "method": {"name": "static", "options": {"weights": weights}}}))
    for entry in spec.methods:
        method = {"name": entry.name, "options": entry.options}
        arms.append((entry.arm, "mtl", apply_settings({**raw, "method": method}, entry.set)))
    if spec.url:
        arms.append(("url", "url", {**raw, "method": {"name": "uniform"}}))
    return arms


def plan(spec: StudySpec) -> list[PlannedRun]:
    """Every run of the study, its config validated here (the only validation of a planned run's config): all
    single-task runs first, then the others, seed by seed.

    Every run gets the same fixed torch thread count (the base preset's or ``set``'s ``threads``, else
    :data:`STUDY_THREADS`): the count changes the numbers on CPU, so ``--jobs`` must change only the wall time.
    """
    base = add_plugins(apply_settings(load_raw(spec.base), spec.set), spec.plugins)  # every run imports them
    singles: list[PlannedRun] = []
    others: list[PlannedRun] = []
    for variant, variant_set in (spec.variants or {"": {}}).items():
        raw = apply_settings(base, variant_set)
        prefix = f"{variant}/" if variant else ""
        needs_stl = spec.single_task and bool(raw.get("tasks"))
        for seed in spec.seeds:
            stl_needs = tuple(run_name(stl_arm(variant, t), seed) for t in raw.get("tasks") or []) if needs_stl else ()
            for arm, kind, config in _arms(spec, raw):
                config = deep_merge(config, {"name": run_name(f"{prefix}{arm}", seed), "seed": seed,
                                             "threads": config.get("threads") or STUDY_THREADS})
                run = PlannedRun(f"{prefix}{arm}", seed, variant, kind, validate_config(config),
                                 () if kind == "stl" else stl_needs)
                (singles if kind == "stl" else others).append(run)
    return singles + others


def expected_config(run: PlannedRun, spec: StudySpec, out: Path,
                    baseline: Mapping[str, Mapping[str, float]] | None = None) -> RunConfig:
    """The run's config in study folder ``out``: URL teachers or the feature-distance measurement (the same seed's
    single-task runs), and the single-task ``baseline`` for model selection when given.

    A copy of the planned (validated) config with these fields replaced, not validated again: the teachers are a
    validated :class:`DistillConfig` naming the run's own tasks, and the baseline's values are floats."""
    if run.kind == "stl" or not spec.single_task:
        return run.config
    update: dict[str, Any] = {}
    teachers = {t: (out / run_name(stl_arm(run.variant, t), run.seed)).resolve() for t in run.config.tasks}
    if run.kind == "url":
        update["distill"] = DistillConfig(mode="distill", teachers=teachers)
    elif spec.feature_distance:
        update["distill"] = DistillConfig(mode="measure", teachers=teachers)
    if baseline is not None:
        update["baseline"] = {task: {key: float(value) for key, value in metrics.items()}
                              for task, metrics in baseline.items()}
    return run.config.model_copy(update=update) if update else run.config


def single_task_baseline(run: PlannedRun, out: Path) -> dict[str, dict[str, float]] | None:
    """The selected validation metrics of the run's single-task runs (same variant and seed), when all exist."""
    baseline = {}
    for task in run.config.tasks:
        record = RunDir(out / run_name(stl_arm(run.variant, task), run.seed)).best_validation_record()
        if record is None:
            return None
        baseline[task] = {metric: value for metric, value in record.metrics[task].items() if value is not None}
    return baseline


def finalize(run: PlannedRun, spec: StudySpec, out: Path) -> RunConfig:
    """The run's config once its single-task runs are finished (see :func:`expected_config`)."""
    return expected_config(run, spec, out, single_task_baseline(run, out) if run.kind != "stl" else None)


def describe_arms(runs: list[PlannedRun]) -> list[dict[str, Any]]:
    """Per arm: kind, method and options, training length, resolution, the seeds planned: what report.md states."""
    arms: dict[str, dict[str, Any]] = {}
    for run in runs:
        config = run.config
        optim = config.optim
        entry = arms.setdefault(run.arm, {
            "arm": run.arm, "kind": run.kind, "method": config.method.name, "options": dict(config.method.options),
            "tasks": list(config.tasks),
            "length": f"{optim.iterations} iterations" if optim.iterations is not None else f"{optim.epochs} epochs",
            "batch_size": config.data.batch_size, "lr": optim.lr, "dataset": config.data.name,
            "data_options": {**config.data.options, **config.data.train_options}, "backbone": config.model.backbone,
            "arch": config.model.arch, "seeds": []})
        entry["seeds"].append(run.seed)
    return list(arms.values())
