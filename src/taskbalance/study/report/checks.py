"""The numbers a study report adds to its table, read from the run folders and kept apart from their rendering:

* the points of claim (d): each (arm, seed, task) of the table's MTL rows with its ``M_i`` and the run's gradient
  profile from ``diagnostics.jsonl`` (:mod:`taskbalance.results.norm_angle`);
* the convergence of every study arm from its runs' validation curves (:mod:`taskbalance.results.convergence`),
  with Δm along the curve against the single-task validation reference (mean over seeds, or the run's seed);
* the power of each paired comparison with the reference arm (:mod:`taskbalance.results.power`).

Markdown and rich renderings of the convergence and power tables are at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

from rich.markup import escape
from rich.table import Table

from taskbalance.results.convergence import MOVE_LIMIT, Convergence, check_convergence
from taskbalance.results.norm_angle import NormAngle, Point, gradient_profile, norm_angle, points_of
from taskbalance.results.power import PairedPower, paired_power
from taskbalance.results.render import markdown_table
from taskbalance.results.table import ResultsTable
from taskbalance.study.curves import run_validation_curve
from taskbalance.training.rundir import RunDir


def norm_angle_of(table: ResultsTable, sources: Mapping[tuple[str, Hashable], Path], rows: Sequence[str]) -> NormAngle | None:
    """Claim (d)'s analysis over the table ``rows`` (their seeds' run folders in ``sources``); None when no run
    logged diagnostics."""
    points: list[Point] = []
    for name in rows:
        row = table.row(name)
        if row is None:
            continue
        for seed, improvements in row.seed_improvements.items():
            folder = sources.get((name, seed))
            profile = None if folder is None else gradient_profile(RunDir(folder).diagnostics)
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


def validation_reference(stl_folders: Mapping[Hashable, Mapping[str, Path]], mode: str) -> dict[Hashable, dict[str, float]] | dict[str, float]:
    """The single-task validation values: per seed ``{seed: {task: value}}`` (``per-seed``), or their mean over
    the seeds that have every task (``mean``)."""
    per_seed: dict[Hashable, dict[str, float]] = {}
    for seed, folders in stl_folders.items():
        values = {}
        for task, folder in folders.items():
            record = RunDir(folder).best_validation_record()
            if record is not None and task in record["primary"]:
                values[task] = float(record["metrics"][task][record["primary"][task]])
        per_seed[seed] = values
    if mode != "mean":
        return per_seed
    tasks = set.intersection(*(set(v) for v in per_seed.values())) if per_seed else set()
    complete = [v for v in per_seed.values() if set(v) >= tasks]
    return {t: sum(v[t] for v in complete) / len(complete) for t in tasks} if complete else {}


def arm_convergence(arms: Mapping[str, Mapping[Hashable, tuple[Path, int | None]]],
                    reference: Mapping[Hashable, Mapping[str, float]] | Mapping[str, float], mode: str) -> list[ArmConvergence]:
    """Each arm's convergence (``arms``: arm -> seed -> (run folder, steps trained)); runs without validation
    records are left out."""
    out = []
    for arm, seeds in arms.items():
        checks: dict[Hashable, Convergence] = {}
        for seed, (folder, steps) in seeds.items():
            curve = run_validation_curve(RunDir(folder))
            if not curve.points:
                continue
            ref: Any = reference.get(seed) if mode != "mean" else reference  # type: ignore[call-overload]
            checks[seed] = check_convergence(curve.points, steps or curve.points[-1][0], curve.best_step,
                                             curve.higher_is_better, ref or None)
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


CONVERGENCE_RULE = (f"Converged: the best validation step is not in the last 10% of training, or the validation Δm "
                    f"(without a single-task validation reference: each task's validation metric, in % change) moves "
                    f"less than {MOVE_LIMIT} points over the last quarter.")


def convergence_tables(checks: Sequence[ArmConvergence]) -> tuple[Table, str]:
    """Rich and Markdown tables of the convergence checks (an unconverged arm is flagged)."""
    headers = ["arm", "status", "best step / steps", "last-quarter move"]
    lines = []
    for check in checks:
        late = [str(s) for s, c in check.seeds.items() if not c.converged]
        status = "converged" if check.converged else f"NOT CONVERGED (seed {', '.join(late)})"
        best = ", ".join(f"{c.best_step}/{c.steps}" if c.best_step is not None else f"—/{c.steps}" for c in check.seeds.values())
        moves = ", ".join("n/a" if c.move is None else f"{c.move:.2f}" for c in check.seeds.values())
        measure = next(iter(check.seeds.values())).measure
        lines.append([check.arm, status, best, f"{moves} ({measure})"])
    table = Table(title="Convergence per arm (seeds in order)")
    for i, header in enumerate(headers):
        table.add_column(header, overflow="fold")
    for line in lines:
        table.add_row(*(escape(cell) for cell in line), style="" if line[1] == "converged" else "yellow")
    return table, markdown_table(headers, lines)


def power_tables(found: Sequence[tuple[str, PairedPower]], reference: str, margin: float) -> tuple[Table, str]:
    """Rich and Markdown tables of the paired comparisons' power."""
    headers = ["arm", "n", "paired sd", "MDD (80%)", f"seeds for {margin:g}", f"sd for {margin:g} at n"]
    lines = [[name, str(p.n), f"{p.sd:.2f}", f"{p.mdd:.2f}", str(p.seeds_for_margin or "> 100000"), f"{p.sd_for_margin:.2f}"]
             for name, p in found]
    table = Table(title=f"Power of the paired comparisons with {reference}")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
    for line in lines:
        table.add_row(*(escape(cell) for cell in line))
    return table, markdown_table(headers, lines)
