"""Gradient diagnostics of the paper's Section V-F and appendix (Figs. 7-16), and the imbalance summary.

At a diagnostic step the balancer returns the Gramian ``G`` of the per-task gradients on the diagnosed source
(the last shared layer by default). From it: per-task gradient norms ``√G_ii`` (Figs. 8, 15, 16), pairwise
cosines (Figs. 10, 11) and dot products ``G_ij`` (Figs. 12, 13), the cosine of each task gradient with the
combined update (Figs. 7, 9, 14) and the loss weights the method applied. The records are
:class:`~taskbalance.records.DiagnosticsRecord`s (``diagnostics.jsonl``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from taskbalance.balancers import StepResult
from taskbalance.conventions import PAIR_SEPARATOR
from taskbalance.records import DiagnosticsRecord


def pair_key(a: str, b: str) -> str:
    """The key of a task pair in diagnostic records (``"semseg|depth"``)."""
    return f"{a}{PAIR_SEPARATOR}{b}"


def diagnostic_record(step: int, result: StepResult,
                      feature_distance: Mapping[str, float] | None = None) -> DiagnosticsRecord | None:
    """The record of one step's gradient geometry (None when the step computed no task gradients); with URL, the
    step's ``feature_distance`` per task."""
    if result.gramian is None:
        return None
    cosines = result.pairwise_cosines()
    assert cosines is not None
    index = {task: i for i, task in enumerate(result.tasks)}
    pairs = list(combinations(result.tasks, 2))
    norms = result.grad_norms or {}
    return DiagnosticsRecord(
        step=step,
        source=result.source,
        tasks=list(result.tasks),
        losses=dict(result.losses),
        weights=dict(result.weights),
        grad_norms=norms,
        weighted_grad_norms={t: abs(result.weights[t]) * n for t, n in norms.items()},
        cos_to_update=result.cosines_to_update,
        cos={pair_key(a, b): float(cosines[index[a], index[b]]) for a, b in pairs},
        dot={pair_key(a, b): float(result.gramian[index[a], index[b]]) for a, b in pairs},
        feature_distance=dict(feature_distance) if feature_distance else None,
    )


def tensorboard_scalars(record: DiagnosticsRecord) -> dict[str, float]:
    """Flatten a diagnostic record into TensorBoard tags (``grad_norm/semseg``, ``cos/semseg|depth``, ...)."""
    scalars: dict[str, float] = {}
    for group, tag in (("grad_norms", "grad_norm"), ("weighted_grad_norms", "weighted_grad_norm"),
                       ("cos_to_update", "cos_to_update"), ("cos", "cos"), ("dot", "dot"),
                       ("weights", "weight"), ("feature_distance", "feature_distance")):
        for key, value in record.group(group).items():
            if value is not None:
                scalars[f"diagnostics/{tag}/{key}"] = float(value)
    return scalars


def _late(records: Sequence[DiagnosticsRecord], fraction: float) -> Sequence[DiagnosticsRecord]:
    start = int(len(records) * (1.0 - fraction))
    return records[min(start, len(records) - 1) :]


def _norm_ratio(record: DiagnosticsRecord, group: str) -> float | None:
    norms = [v for v in record.group(group).values() if v is not None]
    positive = [v for v in norms if v > 0]
    if len(norms) < 2 or not positive:
        return None
    return max(norms) / min(positive)


def _cos_spread(record: DiagnosticsRecord) -> float | None:
    cosines = [v for v in record.group("cos_to_update").values() if v is not None]
    return max(cosines) - min(cosines) if len(cosines) >= 2 else None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def imbalance_summary(records: Sequence[DiagnosticsRecord], late_fraction: float = 0.25) -> dict[str, Any]:
    """Summarise the diagnostics of a run.

    * ``norm_ratio``: largest / smallest weighted task gradient norm ``w_i ‖g_i‖`` (each task's contribution to
      the update), averaged over all logged steps and over the last ``late_fraction`` of them
      (``norm_ratio_late``); 1 means perfectly balanced contributions. ``raw_norm_ratio[_late]``: the same for
      the unweighted ``‖g_i‖``.
    * ``cos_spread``: max - min over tasks of cos(g_i, d), averaged likewise; 0 means every task contributes
      at the same angle (what the paper observes for the well-performing methods).
    * per-task means of the gradient norms, of cos(g_i, d) and of the applied weights.
    """
    if not records:
        return {"steps": 0}
    tasks = list(records[0].tasks)
    late = _late(records, late_fraction)

    def per_task(group: str, subset: Sequence[DiagnosticsRecord]) -> dict[str, float | None]:
        return {t: _mean([r.group(group).get(t) for r in subset]) for t in tasks}

    return {
        "steps": len(records),
        "source": records[0].source,
        "late_fraction": late_fraction,
        "norm_ratio": _mean([_norm_ratio(r, "weighted_grad_norms") for r in records]),
        "norm_ratio_late": _mean([_norm_ratio(r, "weighted_grad_norms") for r in late]),
        "raw_norm_ratio": _mean([_norm_ratio(r, "grad_norms") for r in records]),
        "raw_norm_ratio_late": _mean([_norm_ratio(r, "grad_norms") for r in late]),
        "cos_spread": _mean([_cos_spread(r) for r in records]),
        "cos_spread_late": _mean([_cos_spread(r) for r in late]),
        "grad_norm_late": per_task("grad_norms", late),
        "cos_to_update_late": per_task("cos_to_update", late),
        "weights_mean": per_task("weights", records),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few human-readable lines about a run's imbalance summary."""
    if not summary.get("steps"):
        return "no gradient diagnostics were logged (diagnostics.every = 0)"

    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3g}"

    late = f"last {summary['late_fraction']:.0%}"
    lines = [f"gradient diagnostics on {summary['source']} over {summary['steps']} logged steps:"]
    if len(summary["grad_norm_late"]) > 1:
        lines.append(f"  largest/smallest weighted task gradient norm w_i‖g_i‖: {fmt(summary['norm_ratio'])} ({late}: "
                     f"{fmt(summary['norm_ratio_late'])}); unweighted ‖g_i‖: {fmt(summary['raw_norm_ratio'])} "
                     f"({late}: {fmt(summary['raw_norm_ratio_late'])})")
        lines.append(
            f"  spread of cos(task, combined): {fmt(summary['cos_spread'])} ({late}: {fmt(summary['cos_spread_late'])})"
        )
    for group, label in (("grad_norm_late", "late grad norm"), ("cos_to_update_late", "late cos(task, combined)"),
                         ("weights_mean", "mean weight")):
        values = ", ".join(f"{t} {fmt(v)}" for t, v in summary[group].items())
        lines.append(f"  {label}: {values}")
    return "\n".join(lines)
