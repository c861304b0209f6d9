"""The paper's central claim in numbers: is a task's drop relative to single-task related to its gradient *norm*
rather than to the *angle* of its gradient conflicts?

Per run, from its gradient diagnostics (``diagnostics.jsonl``, on the last shared layer), averaged over every
logged step of training (:func:`gradient_profile`):

* **norm share** of task i: ``w_i‖g_i‖ / Σ_j w_j‖g_j‖``, the task's share of the combined update's gradient norm
  (the weighted norm, so that a loss weight counts: under uniform weights it is ``‖g_i‖ / Σ_j ‖g_j‖``);
* **cosine to the other tasks**: the mean over ``j ≠ i`` of ``cos(g_i, g_j)``;
* **cosine to the update**: ``cos(g_i, d)`` with ``d`` the combined update.

Each (arm, seed, task) of the MTL runs is one point ``(M_i, share, cos_others, cos_update)``, ``M_i`` the task's
signed relative change against single-task (Eq. 5's term; negative = a drop). :func:`norm_angle` gives the Spearman
rank correlation of ``M_i`` with each measure over all points, and the difference of strengths
``|ρ_norm| − |ρ_angle|`` for each angle measure (absolute values: "explains" means a monotone association of either
sign; the signed ρ are reported too). Intervals are 95% percentile bootstrap intervals that resample **seeds** with
replacement (all points of a drawn seed together, so the dependence between the arms of one seed is kept), from a
fixed generator seed: the numbers are reproducible. With ``n`` seeds there are only ``C(2n−1, n)`` distinct
resamples (10 at 3 seeds), which the report states.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskbalance.conventions import PAIR_SEPARATOR
from taskbalance.records import DiagnosticsRecord
from taskbalance.results.errors import ResultsError

#: The angle measures compared with the norm share: key -> how the report names it.
ANGLE_MEASURES: dict[str, str] = {"cos_others": "mean cosine to the other tasks", "cos_update": "cosine to the update"}
#: |ρ| below this is a negligible association (the usual "weak" bound for rank correlations).
NEGLIGIBLE_RHO = 0.3
#: Bootstrap resamples and the generator seed that makes them reproducible.
RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class GradientProfile:
    """A run's per-task gradient measures averaged over its logged steps (see the module notes)."""

    share: dict[str, float]
    cos_others: dict[str, float]
    cos_update: dict[str, float]


def gradient_profile(records: Iterable[DiagnosticsRecord]) -> GradientProfile | None:
    """Average a run's diagnostic records into its :class:`GradientProfile`; None without a record that has
    finite, not all zero weighted gradient norms of all its tasks (at least two)."""
    shares: dict[str, list[float]] = {}
    others: dict[str, list[float]] = {}
    update: dict[str, list[float]] = {}
    for record in records:
        step_shares = record.shares("weighted_grad_norms")
        if step_shares is None or len(step_shares) < 2:
            continue
        for task, value in step_shares.items():
            shares.setdefault(task, []).append(value)
        for task in step_shares:
            cosines = [v for key, v in record.cos.items()
                       if v is not None and math.isfinite(v) and task in key.split(PAIR_SEPARATOR)]
            if cosines:
                others.setdefault(task, []).append(math.fsum(cosines) / len(cosines))
            to_update = (record.cos_to_update or {}).get(task)
            if to_update is not None and math.isfinite(to_update):
                update.setdefault(task, []).append(to_update)
    if not shares:
        return None

    def means(values: dict[str, list[float]]) -> dict[str, float]:
        return {t: math.fsum(v) / len(v) for t, v in values.items()}

    return GradientProfile(means(shares), means(others), means(update))


@dataclass(frozen=True)
class Point:
    """One task of one MTL run: its ``M_i`` (percent) and gradient measures."""

    arm: str
    seed: Hashable
    task: str
    drop: float
    share: float
    cos_others: float | None
    cos_update: float | None


def points_of(arm: str, seed: Hashable, improvements: Mapping[str, float], profile: GradientProfile) -> list[Point]:
    """The points of one run: its per-task ``M_i`` joined with its gradient profile (tasks without a share are
    left out)."""
    return [
        Point(arm, seed, task, drop, profile.share[task], profile.cos_others.get(task), profile.cos_update.get(task))
        for task, drop in improvements.items()
        if task in profile.share
    ]


@dataclass(frozen=True)
class Correlation:
    """A rank correlation (or a difference of two) and its bootstrap interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class NormAngle:
    """The correlations of the drop with the norm share and each angle measure, and the differences of strength."""

    n: int
    points: int
    arms: int
    resamples: int
    distinct: int
    norm: Correlation
    angles: dict[str, Correlation]
    differences: dict[str, Correlation]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers."""
        def c(x: Correlation) -> dict[str, float]:
            return {"estimate": x.estimate, "low": x.low, "high": x.high}

        return {"seeds": self.n, "points": self.points, "arms": self.arms, "resamples": self.resamples,
                "distinct_resamples": self.distinct, "rho_norm": c(self.norm),
                "rho_angle": {k: c(v) for k, v in self.angles.items()},
                "difference": {k: c(v) for k, v in self.differences.items()}}


def _spearman(weights: Any, x: Any, y: Any) -> Any:
    """Spearman's ρ of ``x`` and ``y`` for each row of ``weights`` (how often each point is drawn): the Pearson
    correlation of average ranks, computed as on the data with every point repeated ``weight`` times (ties, such as
    the copies of a point, get their average rank); 0 where either side is constant."""
    import numpy as np

    def ranks(v: Any) -> Any:
        less = (v[None, :] < v[:, None]).astype(float)
        equal = (v[None, :] == v[:, None]).astype(float)
        return weights @ less.T + (weights @ equal.T + 1) / 2

    rx, ry = ranks(x), ranks(y)
    total = weights.sum(axis=1)
    dx = rx - ((weights * rx).sum(axis=1) / total)[:, None]
    dy = ry - ((weights * ry).sum(axis=1) / total)[:, None]
    cov, vx, vy = ((weights * dx * dy).sum(axis=1), (weights * dx * dx).sum(axis=1), (weights * dy * dy).sum(axis=1))
    scale = np.sqrt(vx * vy)
    return np.where(scale > 1e-12 * np.maximum(total, 1) ** 3, cov / np.where(scale > 0, scale, 1), 0.0)


def _strengths(weights: Any, data: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Per weight row: ρ_norm, ρ per angle measure and ``|ρ_norm| − |ρ_angle|`` (both on the points where the angle
    measure exists)."""
    import numpy as np

    drop, share = data[:, 0], data[:, 1]
    norm = _spearman(weights, drop, share)
    angles, differences = {}, {}
    for column, key in enumerate(ANGLE_MEASURES, start=2):
        kept = np.isfinite(data[:, column])
        kept_weights = weights * kept[None, :]
        angle = np.nan_to_num(data[:, column])
        angles[key] = _spearman(kept_weights, drop, angle)
        differences[key] = np.abs(_spearman(kept_weights, drop, share)) - np.abs(angles[key])
    return norm, angles, differences


def norm_angle(points: Sequence[Point], resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
               confidence: float = 0.95) -> NormAngle | None:
    """Spearman correlations of ``M_i`` with the norm share and the angle measures, their differences of strength,
    and percentile bootstrap intervals resampling seeds (see the module notes). None without points.

    Raises:
        ResultsError: a point's value is not finite.
    """
    if not points:
        return None
    import numpy as np

    for p in points:
        if not (math.isfinite(p.drop) and math.isfinite(p.share)):
            raise ResultsError(
                f"{p.arm} seed {p.seed} task {p.task}: M_i {p.drop} or norm share {p.share} is not finite"
            )
    seeds = list(dict.fromkeys(p.seed for p in points))
    data = np.array([[p.drop, p.share, np.nan if p.cos_others is None else p.cos_others,
                      np.nan if p.cos_update is None else p.cos_update] for p in points])
    membership = np.array([[p.seed == s for p in points] for s in seeds], dtype=float)  # seed x point
    estimate = _strengths(np.ones((1, len(points))), data)
    counts = np.random.default_rng(seed).multinomial(len(seeds), [1 / len(seeds)] * len(seeds), size=resamples)
    draws = _strengths(counts.astype(float) @ membership, data)
    tail = (1 - confidence) / 2

    def interval(point: Any, values: Any) -> Correlation:
        low, high = np.quantile(values, [tail, 1 - tail])
        return Correlation(float(point[0]), float(low), float(high))

    return NormAngle(
        n=len(seeds), points=len(points), arms=len({p.arm for p in points}), resamples=resamples,
        distinct=math.comb(2 * len(seeds) - 1, len(seeds)),
        norm=interval(estimate[0], draws[0]),
        angles={k: interval(estimate[1][k], draws[1][k]) for k in ANGLE_MEASURES},
        differences={k: interval(estimate[2][k], draws[2][k]) for k in ANGLE_MEASURES},
    )
