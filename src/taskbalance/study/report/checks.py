"""The numbers a study report adds to its table, read from the run folders and kept apart from their rendering:

* the points of claim (d): each (arm, seed, task) of the table's MTL rows with its ``M_i`` and the run's gradient
  profile from ``diagnostics.jsonl`` (:mod:`taskbalance.results.norm_angle`);
* the convergence of every study arm from its runs' validation curves (:mod:`taskbalance.results.convergence`),
  with Δm along the curve against the single-task validation reference (mean over seeds, or the run's seed);
* the power of each paired comparison with the reference arm (:mod:`taskbalance.results.power`).

Their tables are rendered by :mod:`taskbalance.study.report.render`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskbalance.records import read_diagnostics
from taskbalance.results.convergence import Convergence, check_convergence
from taskbalance.results.norm_angle import NormAngle, Point, gradient_profile, norm_angle, points_of
from taskbalance.results.power import PairedPower, paired_power
from taskbalance.results.table import ResultsTable
from taskbalance.study.curves import run_validation_curve
from taskbalance.training.rundir import RunDir


def norm_angle_of(table: ResultsTable, sources: Mapping[tuple[str, Hashable], Path],
                  rows: Sequence[str]) -> NormAngle | None:
    """Claim (d)'s analysis over the table ``rows`` (their seeds' run folders in ``sources``); None when no run
    logged diagnostics."""
    points: list[Point] = []
    for name in rows:
        row = table.row(name)
        if row is None:
            continue
        for seed, improvements in row.seed_improvements.items():
            folder = sources.get((name, seed))
            profile = None if folder is None else gradient_profile(read_diagnostics(folder))
            if profile is not None:
                points += points_of(name, seed, improvements, profile)
    return norm_angle(points)


@dataclass(frozen=True)
class ArmConvergence:
    """The convergence of an arm's runs, per seed."""

    arm: str
    seeds: dict[Hashable, Convergence]

    @property
    def converged(self) -> bool:
        return all(c.converged for c in self.seeds.values())


def validation_reference(stl_folders: Mapping[Hashable, Mapping[str, Path]],
                         mode: str) -> Callable[[Hashable], Mapping[str, float] | None]:
    """The single-task validation values ``{task: value}`` a seed's runs are judged against: the seed's own
    (``per-seed``; None for a seed without single-task runs), or for every seed the mean over the seeds of each task
    that every seed has (``mean``)."""
    per_seed: dict[Hashable, dict[str, float]] = {}
    for seed, folders in stl_folders.items():
        values = {}
        for task, folder in folders.items():
            record = RunDir(folder).best_validation_record()
            value = None if record is None else record.primary_values().get(task)
            if value is not None:
                values[task] = value
        per_seed[seed] = values
    if mode != "mean":
        return per_seed.get
    tasks = set.intersection(*(set(v) for v in per_seed.values())) if per_seed else set()
    mean = {t: sum(v[t] for v in per_seed.values()) / len(per_seed) for t in tasks}
    return lambda seed: mean


def arm_convergence(arms: Mapping[str, Mapping[Hashable, tuple[Path, int | None]]],
                    reference: Callable[[Hashable], Mapping[str, float] | None]) -> list[ArmConvergence]:
    """Each arm's convergence (``arms``: arm -> seed -> (run folder, steps trained); ``reference``: the single-task
    validation values of a seed, see :func:`validation_reference`); runs without validation records are left
    out."""
    out = []
    for arm, seeds in arms.items():
        checks: dict[Hashable, Convergence] = {}
        for seed, (folder, steps) in seeds.items():
            curve = run_validation_curve(RunDir(folder))
            if not curve.points:
                continue
            checks[seed] = check_convergence(curve.points, steps or curve.points[-1][0], curve.best_step,
                                             curve.higher_is_better, reference(seed) or None)
        if checks:
            out.append(ArmConvergence(arm, checks))
    return out


def comparison_power(table: ResultsTable, margin: float) -> list[tuple[str, PairedPower]]:
    """The power of each row's paired comparison with the reference arm (rows with at least 2 common seeds)."""
    found = []
    for row in table.rows:
        versus = row.versus_reference
        if versus is not None and (power := paired_power(versus.std, versus.n, margin)) is not None:
            found.append((row.name, power))
    return found
