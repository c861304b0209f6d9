"""The doctor checked against a study (``<study>/[<variant>/]<arm>/seed-<n>``, see :mod:`taskbalance.study.plan`).

For each seed's finished uniform run the diagnosis is compared with what the study measured on the test split:

* **tasks at risk** against the tasks whose primary metric fell below the same seed's single-task runs (``M_i < 0``,
  Eq. 5): agreement over every (seed, task) decision, precision (at-risk tasks that fell below) and recall (tasks
  that fell below and were called at risk);
* **the recommended method's rank** among the study's MTL arms by the seed's Δm (1 = best), and whether it beat
  uniform on that seed;
* **how early the diagnosis stabilises**: the first logged step from which the recommendation on the steps up to it
  stays the one made on all steps.

Proportions carry 95% Wilson score intervals (:func:`~taskbalance.doctor.signals.wilson`). The (seed, task) decisions
of one seed are not independent, so the interval over them is optimistic; the per-seed columns show the spread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from taskbalance.doctor.rules import Diagnosis, diagnose, recommend
from taskbalance.doctor.signals import DoctorError, Proportion, compute_signals, read_records, wilson
from taskbalance.records import DIAGNOSTICS_FILE, DiagnosticsRecord
from taskbalance.results.schema import RESULTS_FILENAME

#: The study's arm of equal weights, whose runs the doctor diagnoses.
UNIFORM_ARM = "uniform"
#: A seed's folder inside an arm (``study.plan.run_name``).
SEED_FOLDER = re.compile(r"^seed-(\d+)$")
#: Folders a study moved aside as stale (``<run>.stale-<hash>``).
STALE_MARK = ".stale-"


@dataclass(frozen=True)
class Outcome:
    """What the study measured for one seed (None where it has no results for it)."""

    improvements: Mapping[str, float] | None  # uniform's M_i against the seed's single-task runs
    delta_m: Mapping[str, float]  # arm -> Δm of this seed
    recommended_arm: str | None  # the arm of the recommended method, None when the study did not run it
    uniform_arm: str | None

    @property
    def below_single_task(self) -> tuple[str, ...] | None:
        """Tasks whose uniform result fell below single-task."""
        return None if self.improvements is None else tuple(t for t, m in self.improvements.items() if m < 0)

    @property
    def rank(self) -> int | None:
        """The recommended arm's rank by Δm among the seed's MTL arms (1 = best)."""
        if self.recommended_arm is None or self.recommended_arm not in self.delta_m:
            return None
        return 1 + sum(v > self.delta_m[self.recommended_arm] for v in self.delta_m.values())

    @property
    def best_arm(self) -> str | None:
        """The arm with the highest Δm on this seed."""
        return max(self.delta_m, key=lambda arm: self.delta_m[arm]) if self.delta_m else None


@dataclass(frozen=True)
class SeedCheck:
    """One seed: the diagnosis of its uniform run, the study's outcome, and when the recommendation settled."""

    seed: int
    run: Path
    diagnosis: Diagnosis
    outcome: Outcome
    stable_from: int
    last_step: int

    @property
    def beats_uniform(self) -> bool | None:
        """Whether the recommended arm's Δm beat uniform's (None when either is missing or uniform is recommended)."""
        rec, uni = self.outcome.recommended_arm, self.outcome.uniform_arm
        if (
            rec is None
            or uni is None
            or rec == uni
            or rec not in self.outcome.delta_m
            or uni not in self.outcome.delta_m
        ):
            return None
        return self.outcome.delta_m[rec] > self.outcome.delta_m[uni]


@dataclass(frozen=True)
class StudyCheck:
    """The doctor against one study (or one variant of it)."""

    root: Path
    seeds: tuple[SeedCheck, ...]
    task_agreement: Proportion
    precision: Proportion
    recall: Proportion
    beats_uniform: Proportion
    best: Proportion
    notes: tuple[str, ...]


def uniform_runs(root: Path) -> dict[Path, list[tuple[int, Path]]]:
    """Study folder → per study (variant) folder its uniform runs with diagnostics, as (seed, run) in seed order."""
    found: dict[Path, list[tuple[int, Path]]] = {}
    for log in sorted(Path(root).rglob(f"{UNIFORM_ARM}/seed-*/{DIAGNOSTICS_FILE}")):
        run = log.parent
        match = SEED_FOLDER.match(run.name)
        if match is None or STALE_MARK in str(run.relative_to(root)):
            continue
        found.setdefault(run.parent.parent, []).append((int(match.group(1)), run))
    return {study: sorted(runs) for study, runs in found.items()}


def stable_from(records: Sequence[DiagnosticsRecord]) -> int:
    """The first logged step from which the recommendation on the records up to each step equals the one on all."""
    methods = [recommend(compute_signals(records[: i + 1])).method for i in range(len(records))]
    first = len(methods) - 1
    while first > 0 and methods[first - 1] == methods[-1]:
        first -= 1
    return records[first].step


def study_outcome(study: Path, method: str) -> tuple[dict[int, Outcome], list[str]]:
    """Per seed: uniform's M_i against the seed's single-task runs, every MTL arm's Δm and the arm of ``method``."""
    from taskbalance.results import ResultsError, baseline_arm, group_runs, load_runs, results_table, task_improvements

    try:
        runs = load_runs([study])
        stl = [r for r in runs if r.kind == "stl"]
        arms = group_runs([r for r in runs if r.kind != "stl"])
        if not stl:
            return {}, [f"{study}: no single-task runs, so no measured outcome to compare with"]
        base = baseline_arm(stl)
        table = results_table(arms, base, include_baseline=False, reference=None, baseline_mode="per-seed")
    except ResultsError as error:
        return {}, [f"{study}: the study's results cannot be read ({error}), so no measured outcome to compare with"]
    methods = {arm.name: next(iter(arm.runs.values())).method for arm in arms}
    chosen = next((name for name, m in methods.items() if m == method), None)
    uniform = next((arm for arm in arms if next(iter(arm.runs.values())).method == UNIFORM_ARM), None)
    notes = [] if chosen is not None else [f"{study}: the study has no {method} arm, so its rank is not measured"]
    outcomes: dict[int, Outcome] = {}
    seeds = {seed for row in table.rows for seed in row.seed_delta_m if isinstance(seed, int)}
    for seed in sorted(seeds):
        improvements = None
        if uniform is not None and seed in uniform.runs and seed in base.runs:
            run, reference = uniform.runs[seed], base.runs[seed]
            values = run.primary_values()
            try:
                improvements = task_improvements(values, reference.primary_values(), run.higher_is_better)
            except ResultsError as error:
                notes.append(f"seed {seed}: uniform cannot be compared with single-task ({error})")
        delta = {row.name: row.seed_delta_m[seed] for row in table.rows if seed in row.seed_delta_m}
        outcomes[seed] = Outcome(improvements, delta, chosen, uniform.name if uniform is not None else None)
    return outcomes, notes


def check_study(study: Path, runs: Sequence[tuple[int, Path]], steps: int | None = None) -> StudyCheck:
    """Diagnose each seed's uniform run (on its first ``steps`` steps when given) and compare with the study."""
    diagnosed = []
    notes = [f"seed {seed}: {run} has not finished (no {RESULTS_FILENAME}), left out" for seed, run in runs
             if not (run / RESULTS_FILENAME).is_file()]
    for seed, run in runs:
        if not (run / RESULTS_FILENAME).is_file():
            continue
        records = read_records(run)
        used = read_records(run, steps) if steps is not None else records
        diagnosed.append((seed, run, diagnose(compute_signals(used)), records))
    methods = {d.recommendation.method for _, _, d, _ in diagnosed}
    outcomes: dict[str, dict[int, Outcome]] = {}
    for method in sorted(methods):
        outcomes[method], found = study_outcome(study, method)
        notes += found
    empty = Outcome(None, {}, None, None)
    checks = tuple(SeedCheck(seed, run, d, outcomes[d.recommendation.method].get(seed, empty), stable_from(records),
                             records[-1].step) for seed, run, d, records in diagnosed)
    decisions = correct = predicted = hit = below = 0
    for check in checks:
        fell = check.outcome.below_single_task
        if fell is None:
            continue
        for task in check.diagnosis.signals.tasks:
            decisions += 1
            correct += (task in check.diagnosis.at_risk) == (task in fell)
        predicted += len(check.diagnosis.at_risk)
        below += len(fell)
        hit += len(set(check.diagnosis.at_risk) & set(fell))
    beats = [c.beats_uniform for c in checks if c.beats_uniform is not None]
    ranks = [c.outcome.rank for c in checks if c.outcome.rank is not None]
    return StudyCheck(Path(study), checks, wilson(correct, decisions), wilson(hit, predicted), wilson(hit, below),
                      wilson(sum(beats), len(beats)), wilson(sum(r == 1 for r in ranks), len(ranks)),
                      tuple(dict.fromkeys(notes)))


def check_studies(root: Path, steps: int | None = None) -> list[StudyCheck]:
    """Every study (variant) folder below ``root`` that holds uniform runs with diagnostics."""
    groups = uniform_runs(root)
    if not groups:
        raise DoctorError(f"{root} is neither a run directory (no config.yaml) nor a study folder "
                          f"(no {UNIFORM_ARM}/seed-<n> run with {DIAGNOSTICS_FILE} below it)")
    return [check_study(study, runs, steps) for study, runs in groups.items()]
