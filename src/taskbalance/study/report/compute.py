"""The study report's numbers, computed from the finished runs' folders (no rendering, no file written).

:func:`compute_report` reads every finished run's ``results.json`` and builds the :class:`StudyReport`: the
Table II-style results over seeds against single-task (mean ± std, 95% t-intervals, the paired comparison with
uniform, Holm-corrected), the grid arm chosen on mean validation Δm, each arm's convergence, the power of every
paired comparison, Table VI-style mean loss weights, the imbalance summary and the verdicts on the paper's claims
(a)-(d) (:mod:`taskbalance.results.verdicts`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from taskbalance.results import (
    Arm,
    RunResult,
    baseline_arm,
    comparability_warnings,
    delta_m,
    load_run_result,
    results_table,
    summarize,
)
from taskbalance.results.errors import ResultsError
from taskbalance.results.verdicts import judge_claims
from taskbalance.study.report.checks import (
    ArmConvergence,
    arm_convergence,
    comparison_power,
    norm_angle_of,
    validation_reference,
)
from taskbalance.study.report.model import (
    GRID_ROW,
    IMBALANCE_KEYS,
    Finished,
    GridChoice,
    Imbalance,
    LossWeights,
    ReportRun,
    ReportSpec,
    StudyReport,
)
from taskbalance.training.rundir import RunDir


def _stl_dirs(out: Path, runs: Sequence[ReportRun], run: ReportRun) -> dict[str, RunDir]:
    """The same variant's and seed's single-task run directories, per task."""
    return {r.config.tasks[0]: RunDir(out / r.name) for r in runs
            if r.kind == "stl" and r.variant == run.variant and r.seed == run.seed}


def _validation_delta(run_dir: RunDir, stl_dirs: Mapping[str, RunDir]) -> float | None:
    mtl = run_dir.best_validation_record()
    stl = {task: d.best_validation_record() for task, d in stl_dirs.items()}
    if mtl is None or not stl or any(r is None for r in stl.values()):
        return None
    values = mtl.primary_values()
    try:
        single = {t: r.primary_values()[t] for t, r in stl.items() if r is not None}
        return delta_m({t: values[t] for t in stl}, single, mtl.higher_is_better)
    except (ResultsError, KeyError):
        return None


def _choose_grid(grid: Mapping[str, Sequence[Finished]], runs: Sequence[ReportRun], out: Path,
                baseline: Arm) -> GridChoice | None:
    """Select the grid-search arm on mean validation Δm over its seeds (on mean test Δm, said so, when a seed has
    no validation record)."""
    if not grid:
        return None
    scores: dict[str, float] = {}
    for arm, members in grid.items():
        values = [_validation_delta(RunDir(out / f.run.name), _stl_dirs(out, runs, f.run)) for f in members]
        known = [v for v in values if v is not None]
        if len(known) == len(values):
            scores[arm] = sum(known) / len(known)
    score: float | None
    if len(scores) == len(grid):
        arm = max(scores, key=scores.__getitem__)
        n = len(grid[arm])
        note = f"the grid point with the best mean validation Δm over {n} seed{'s' if n != 1 else ''}"
        score = scores[arm]
    else:
        table = results_table([Arm(arm, {f.run.seed: f.result for f in members}) for arm, members in grid.items()],
                              baseline, include_baseline=False, reference=None)
        best = max(table.rows, key=lambda row: row.delta_m.mean)
        arm, score = best.name, best.delta_m.mean
        note = "the grid point with the best mean TEST Δm: no validation records"
    weights = dict(grid[arm][0].run.config.method.options.get("weights") or {})
    return GridChoice(arm, weights, score, note)


def _baseline(stl: Sequence[Finished]) -> Arm | None:
    """The single-task baseline per seed, from the seeds whose single-task runs cover every task."""
    tasks = {f.result.tasks[0] for f in stl}
    by_seed: dict[int, list[RunResult]] = {}
    for f in stl:
        by_seed.setdefault(f.run.seed, []).append(f.result)
    complete = [run for runs in by_seed.values() if {r.tasks[0] for r in runs} == tasks for run in runs]
    return baseline_arm(complete) if complete else None


Sources = dict[tuple[str, Any], Path]


def _arm_rows(variants: Sequence[str], finished: Sequence[Finished], runs: Sequence[ReportRun], out: Path,
              baseline: Arm) -> tuple[list[Arm], dict[str, GridChoice | None], Sources]:
    """The table's arms (per variant: its single-task row when not the reference, uniform, the chosen grid arm,
    each method), the grid choice per variant, and the run folder of each (MTL row, seed) of the reference variant."""
    arms: list[Arm] = []
    choices: dict[str, GridChoice | None] = {}
    sources: Sources = {}
    for variant in variants:
        prefix = f"{variant}: " if variant else ""
        members: dict[str, list[Finished]] = {}
        for f in finished:
            if f.run.variant == variant:
                members.setdefault(f.run.arm, []).append(f)
        if variant != variants[0]:
            own = _baseline([f for fs in members.values() for f in fs if f.run.kind == "stl"])
            if own is not None:
                arms.append(Arm(f"{prefix}Single-task", own.runs))
        grid = {arm: fs for arm, fs in members.items() if fs[0].run.kind == "grid"}
        choices[variant] = _choose_grid(grid, runs, out, baseline)
        choice = choices[variant]
        for arm, fs in members.items():
            kind = fs[0].run.kind
            if kind == "stl" or (kind == "grid" and (choice is None or arm != choice.arm)):
                continue
            label = f"{prefix}{GRID_ROW if kind == 'grid' else arm.split('/')[-1]}"
            arms.append(Arm(label, {f.run.seed: f.result for f in fs}))
            if variant == variants[0]:  # claim (d) reads the reference variant's runs
                sources.update({(label, f.run.seed): out / f.run.name for f in fs})
    return arms, choices, sources


def _avgnorm_row(finished: Sequence[Finished], variant: str) -> str:
    """The label of the reference variant's AvgNorm arm (the method's name when the study has none)."""
    for f in finished:
        if f.run.variant == variant and f.run.kind == "mtl" and f.run.config.method.name == "avgnorm":
            return f.run.arm.split("/")[-1]
    return "avgnorm"


_COUNTS = re.compile(r",?\s*\b\d+\s+(?:steps?|iterations?|epochs?|seeds?)\b", re.IGNORECASE)


def report_title(description: str, finished: Sequence[Finished]) -> str:
    """The report's title: the preset's description without its planned counts, then the steps and seeds actually
    run (``… : 30 steps, 1 seed (0)``; a range when the runs differ)."""
    steps = sorted({int(f.result.meta["steps"]) for f in finished if f.result.meta.get("steps") is not None})
    seeds = sorted({f.run.seed for f in finished})
    base = _COUNTS.sub("", description).strip(" ,:") or "Study report"
    trained = "" if not steps else f"{steps[0]} steps" if len(steps) == 1 else f"{steps[0]}–{steps[-1]} steps"
    ran = f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
    return f"{base}: {trained + ', ' if trained else ''}{ran}"


def _convergence(finished: Sequence[Finished], variants: Sequence[str], out: Path, mode: str) -> list[ArmConvergence]:
    """Each study arm's convergence (the single-task validation reference of its own variant)."""
    checks = []
    for variant in variants:
        stl: dict[Any, dict[str, Path]] = {}
        arms: dict[str, dict[Any, tuple[Path, int | None]]] = {}
        for f in finished:
            if f.run.variant != variant:
                continue
            if f.run.kind == "stl":
                stl.setdefault(f.run.seed, {})[f.result.tasks[0]] = out / f.run.name
            steps = f.result.meta.get("steps")
            arms.setdefault(f.run.arm, {})[f.run.seed] = (out / f.run.name, None if steps is None else int(steps))
        checks += arm_convergence(arms, validation_reference(stl, mode))
    return checks


def _loss_weights(rows: Sequence[tuple[str, Sequence[RunResult]]], tasks: Sequence[str]) -> list[LossWeights]:
    """Each arm's mean applied loss weights over its seeds (arms whose runs all logged every task's weight)."""
    return [LossWeights(name, {t: summarize([r.mean_weights[t] for r in results]) for t in tasks})
            for name, results in rows
            if all(r.mean_weights and all(t in r.mean_weights for t in tasks) for r in results)]


def _imbalance(rows: Sequence[tuple[str, Sequence[RunResult]]]) -> list[Imbalance]:
    """Each arm's imbalance summary values over its seeds (arms whose runs all logged diagnostics)."""
    found = []
    for name, results in rows:
        summaries = [r.meta.get("imbalance") or {} for r in results]
        if all(s.get("steps") for s in summaries):
            found.append(Imbalance(name, {key: [s[key] for s in summaries if s.get(key) is not None]
                                          for key in IMBALANCE_KEYS}))
    return found


def _steps_trained(finished: Sequence[Finished]) -> dict[str, list[int]]:
    trained: dict[str, list[int]] = {}
    for f in finished:
        if f.result.meta.get("steps") is not None:
            trained.setdefault(f.run.arm, []).append(int(f.result.meta["steps"]))
    return trained


def compute_report(spec: ReportSpec, runs: Sequence[ReportRun], out: Path,
                   arms: Sequence[Mapping[str, Any]] | None = None) -> StudyReport:
    """The report of every finished run of the study (``runs``: its planned runs, read from ``out/<run.name>``;
    ``arms``: what the study planned per arm, ``study.describe_arms``).

    Raises:
        ResultsError: no seed of the reference variant has finished all its single-task runs.
    """
    finished = [Finished(run, load_run_result(out / run.name)) for run in runs if RunDir(out / run.name).is_finished()]
    variants = list(dict.fromkeys(run.variant for run in runs))
    baseline = _baseline([f for f in finished if f.run.kind == "stl" and f.run.variant == variants[0]])
    if baseline is None:
        raise ResultsError("the report needs the single-task runs of the study; no seed has finished all of them")
    mode, margin = spec.delta_m_baseline, spec.equivalence_margin
    table_arms, grid_choices, sources = _arm_rows(variants, finished, runs, out, baseline)
    table = results_table(table_arms, baseline, reference="uniform", baseline_mode=mode)
    reference_choice = grid_choices.get(variants[0])
    reference_rows = [arm.name for arm in table_arms if any((arm.name, seed) in sources for seed in arm.seeds)]
    verdicts = judge_claims(
        table, avgnorm=_avgnorm_row(finished, variants[0]), grid=GRID_ROW,
        grid_choice="" if reference_choice is None else f"{reference_choice.arm}, {reference_choice.note}",
        margin=margin, gradients=norm_angle_of(table, sources, reference_rows))
    rows = [(arm.name, [arm.runs[s] for s in arm.seeds]) for arm in table_arms]
    return StudyReport(
        title=report_title(spec.description, finished), delta_m_baseline=mode, margin=margin, finished=finished,
        planned_runs=len(runs), table=table, table_arms=table_arms, baseline=baseline, grid=grid_choices,
        selection=sorted({f.result.selection for f in finished}), verdicts=verdicts,
        warnings=comparability_warnings([f.result for f in finished]),
        convergence=_convergence(finished, variants, out, mode), power=comparison_power(table, margin),
        loss_weights=_loss_weights(rows, [c.task for c in table.columns]), imbalance=_imbalance(rows),
        planned_arms=list(arms or []), steps_trained=_steps_trained(finished))
