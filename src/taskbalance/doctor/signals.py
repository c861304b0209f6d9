"""The signals the doctor reads from a run's gradient diagnostics (``diagnostics.jsonl``, see
:mod:`taskbalance.training.diagnostics` for the record format).

Per logged step the record holds, on the diagnosed layer (the last shared layer by default): each task's gradient
norm ``‖g_i‖``, its weighted norm ``w_i‖g_i‖`` (its contribution to the update), ``cos(g_i, d)`` with the combined
update ``d`` and the pairwise cosines ``cos(g_i, g_j)``. From them:

* **norm share** ``‖g_i‖ / Σ_j ‖g_j‖`` and **contribution share** ``w_i‖g_i‖ / Σ_j w_j‖g_j‖`` (equal for a uniform
  run), each averaged over the steps;
* **norm ratio** ``max_i ‖g_i‖ / min_i ‖g_i‖`` per step, summarised by its median over all steps and over the first
  and last third of them (the trend);
* **conflict** per task pair: the fraction of steps whose cosine is negative (with its 95% Wilson interval) and the
  mean cosine; and the fraction of steps on which any pair is negative.

The records are :class:`~taskbalance.records.DiagnosticsRecord`s, read with
:func:`taskbalance.plots.diagnostics.load_records` (the same reader as the figures, which says why a folder has none).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from taskbalance.conventions import PAIR_SEPARATOR
from taskbalance.plots.diagnostics import load_records
from taskbalance.records import DiagnosticsRecord

#: Two-sided 95% normal quantile of the Wilson intervals (the doctor's one confidence level).
Z95 = statistics.NormalDist().inv_cdf(0.975)


class DoctorError(ValueError):
    """A folder the doctor cannot diagnose: the message is one line saying which and why."""


@dataclass(frozen=True)
class Proportion:
    """``k`` of ``n`` with its 95% Wilson score interval (``low``, ``high``); ``n = 0`` has no value."""

    k: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float | None:
        """``k / n`` (None when ``n`` is 0)."""
        return self.k / self.n if self.n else None


def wilson(k: int, n: int, z: float = Z95) -> Proportion:
    """``k`` successes in ``n`` trials with the Wilson score interval (good at small ``n`` and at 0 or ``n``)."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Proportion(0, 0, 0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Proportion(k, n, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class PairConflict:
    """One task pair over the steps: mean cosine and how often it was negative."""

    a: str
    b: str
    mean_cos: float
    negative: Proportion

    @property
    def key(self) -> str:
        """``"semseg|depth"``, as in the records."""
        return f"{self.a}{PAIR_SEPARATOR}{self.b}"


@dataclass(frozen=True)
class Signals:
    """What the diagnostics of one run say, over the records used (``first_step`` .. ``last_step``)."""

    tasks: tuple[str, ...]
    source: str | None
    records: int
    first_step: int
    last_step: int
    norm_share: Mapping[str, float]
    contribution_share: Mapping[str, float]
    cos_to_update: Mapping[str, float | None]
    mean_weight: Mapping[str, float]
    norm_ratio: float
    norm_ratio_early: float
    norm_ratio_late: float
    pairs: tuple[PairConflict, ...]
    any_negative: Proportion

    @property
    def largest(self) -> str:
        """The task with the largest norm share."""
        return max(self.tasks, key=lambda t: self.norm_share[t])

    @property
    def smallest(self) -> str:
        """The task with the smallest norm share."""
        return min(self.tasks, key=lambda t: self.norm_share[t])


def read_records(run: Path, steps: int | None = None) -> list[DiagnosticsRecord]:
    """A run's diagnostic records, those logged at training steps ``<= steps`` when given.

    Raises:
        DoctorError: the folder is not a run, has no records, has records of one task only, or none up to ``steps``.
    """
    try:
        records = load_records(Path(run))
    except FileNotFoundError as error:
        raise DoctorError(str(error)) from None
    tasks = records[0].tasks
    if len(tasks) < 2:
        raise DoctorError(f"{run} is a single-task run ({', '.join(tasks) or 'no task'}): there is nothing to balance")
    if steps is not None:
        if steps < 1:
            raise DoctorError(f"--steps must be at least 1, got {steps}")
        kept = [r for r in records if r.step <= steps]
        if not kept:
            raise DoctorError(f"{run} has no diagnostics record at or before step {steps} "
                              f"(the first is at step {records[0].step})")
        records = kept
    return records


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(kept) if kept else None


def _ratio(record: DiagnosticsRecord, tasks: Sequence[str]) -> float | None:
    norms = [record.grad_norms.get(t) for t in tasks]
    known = [n for n in norms if n is not None]
    if len(known) != len(norms) or min(known) <= 0:
        return None
    return max(known) / min(known)


def _median(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(kept) if kept else math.inf


def _pair(records: Sequence[DiagnosticsRecord], a: str, b: str) -> PairConflict:
    key = f"{a}{PAIR_SEPARATOR}{b}"
    values = [v for v in (r.cos.get(key) for r in records) if v is not None]
    return PairConflict(
        a, b, statistics.fmean(values) if values else 0.0, wilson(sum(v < 0 for v in values), len(values))
    )


def compute_signals(records: Sequence[DiagnosticsRecord]) -> Signals:
    """The doctor's signals of a run's diagnostic records (at least one record of at least two tasks)."""
    if not records:
        raise DoctorError("no diagnostics records to diagnose")
    tasks = tuple(records[0].tasks)

    def per_task_share(group: str) -> dict[str, float]:
        rows = [s for s in (r.shares(group, tasks) for r in records) if s is not None]
        if not rows:
            raise DoctorError(f"the diagnostics records hold no usable {group}")
        return {t: statistics.fmean(row[t] for row in rows) for t in tasks}

    ratios = [_ratio(r, tasks) for r in records]
    third = max(1, len(records) // 3)
    negative = [any(v is not None and v < 0 for v in r.cos.values()) for r in records]
    return Signals(
        tasks=tasks,
        source=records[0].source,
        records=len(records),
        first_step=records[0].step,
        last_step=records[-1].step,
        norm_share=per_task_share("grad_norms"),
        contribution_share=per_task_share("weighted_grad_norms"),
        cos_to_update={t: _mean([r.group("cos_to_update").get(t) for r in records]) for t in tasks},
        mean_weight={t: _mean([r.weights.get(t) for r in records]) or 0.0 for t in tasks},
        norm_ratio=_median(ratios),
        norm_ratio_early=_median(ratios[:third]),
        norm_ratio_late=_median(ratios[-third:]),
        pairs=tuple(_pair(records, a, b) for a, b in combinations(tasks, 2)),
        any_negative=wilson(sum(negative), len(negative)),
    )
