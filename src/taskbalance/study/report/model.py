"""The study report as data: what the report states about a study's finished runs, computed before any rendering.

:class:`StudyReport` is built by :func:`taskbalance.study.report.compute.compute_report` and rendered by
:mod:`taskbalance.study.report.render` (Markdown, rich tables, ``report.json``); nothing here reads or writes a file.
The report reads a study's runs and preset through the :class:`ReportRun` and :class:`ReportSpec` protocols, so it
never imports the study's planner or scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from taskbalance.results import Arm, ResultsTable, RunResult, Summary
from taskbalance.results.power import PairedPower
from taskbalance.results.table import BaselineMode
from taskbalance.results.verdicts import Verdict
from taskbalance.study.report.checks import ArmConvergence
from taskbalance.training.config import RunConfig

#: The table row of the grid-search arm chosen on validation.
GRID_ROW = "grid search"

#: The imbalance summary values the report shows per arm (``RunResult.meta["imbalance"]`` keys) and their headers.
IMBALANCE_LABELS = {"norm_ratio_late": "max/min w_i‖g_i‖", "raw_norm_ratio_late": "max/min ‖g_i‖",
                    "cos_spread_late": "spread cos(g_i, d)"}
IMBALANCE_KEYS = tuple(IMBALANCE_LABELS)


class ReportRun(Protocol):
    """What the report reads of a planned study run (``study.PlannedRun`` has these)."""

    @property
    def name(self) -> str: ...  # the run's folder inside the study folder
    @property
    def arm(self) -> str: ...  # the arm ([<variant>/]uniform); the runs of one arm differ only in their seed
    @property
    def seed(self) -> int: ...
    @property
    def variant(self) -> str: ...
    @property
    def kind(self) -> str: ...  # "stl", "mtl", "grid" or "url"
    @property
    def config(self) -> RunConfig: ...  # the run's validated config


class ReportSpec(Protocol):
    """What the report reads of a study preset."""

    @property
    def description(self) -> str: ...
    @property
    def diagnostics_runs(self) -> list[str] | None: ...  # arms drawn in the diagnostics figures (None: all MTL arms)
    @property
    def equivalence_margin(self) -> float: ...  # δ of claims (a) and (b) and of the power statements
    @property
    def delta_m_baseline(self) -> BaselineMode: ...  # "mean" or "per-seed": Δm's single-task reference


@dataclass(frozen=True)
class GridChoice:
    """The grid arm with the best mean validation Δm over seeds (each seed against the same seed's single-task
    validation metrics), or, without validation records, the best mean test Δm (said so in ``note``)."""

    arm: str
    weights: dict[str, float]
    score: float | None
    note: str


@dataclass(frozen=True)
class Finished:
    """A finished run of the study and its ``results.json``."""

    run: ReportRun
    result: RunResult


@dataclass(frozen=True)
class LossWeights:
    """Table VI: an arm's mean applied loss weight per task, summarised over its seeds."""

    arm: str
    per_task: dict[str, Summary]


@dataclass(frozen=True)
class Imbalance:
    """An arm's gradient-imbalance summary over the last 25% of training: per :data:`IMBALANCE_KEYS` key, the values
    of the seeds that logged it."""

    arm: str
    values: dict[str, list[float]]


@dataclass(frozen=True)
class StudyReport:
    """Everything the report states, in the order it states it."""

    title: str
    delta_m_baseline: BaselineMode  # "mean" or "per-seed"
    margin: float  # δ, in Δm points
    finished: list[Finished]
    planned_runs: int
    table: ResultsTable
    table_arms: list[Arm]  # the table's arms, the single-task baseline aside
    baseline: Arm  # the reference variant's single-task baseline per seed
    grid: dict[str, GridChoice | None]  # per variant
    selection: list[str]  # the model-selection rules of the finished runs
    verdicts: list[Verdict]
    warnings: list[str]
    convergence: list[ArmConvergence]
    power: list[tuple[str, PairedPower]]
    loss_weights: list[LossWeights]
    imbalance: list[Imbalance]
    planned_arms: list[Mapping[str, Any]]  # what the study planned per arm (``study.describe_arms``)
    steps_trained: dict[str, list[int]]  # per arm, the steps its finished runs trained

    @property
    def seeds(self) -> list[int]:
        """The seeds of the finished runs."""
        return sorted({f.run.seed for f in self.finished})

    @property
    def unconverged(self) -> list[str]:
        """The arms a seed of which has not converged."""
        return [c.arm for c in self.convergence if not c.converged]

    @property
    def one_seed(self) -> bool:
        """Every arm of the table has a single seed: no verdict can be reached."""
        return bool(self.table.rows) and max(r.n for r in self.table.rows) < 2
