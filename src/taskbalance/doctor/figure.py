"""The doctor's one figure: norm shares, cosines with the update and pairwise cosines over training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from taskbalance.atomic import atomic_target
from taskbalance.conventions import PAIR_SEPARATOR, TASK_LABELS
from taskbalance.doctor import rules
from taskbalance.plots.diagnostics import window_means
from taskbalance.records import DiagnosticsRecord

#: Points per curve (windowed means over the logged steps, as the paper averages over iterations).
POINTS = 50


def diagnosis_figure(records: Sequence[DiagnosticsRecord], path: Path, points: int = POINTS) -> Path:
    """Draw three panels and save them to ``path`` (PNG) atomically: the contribution share w_i‖g_i‖/Σ w_j‖g_j‖ (the
    norm share under uniform weights; log scale, with the at-risk line), cos(g_i, d), and the pairwise cosines."""
    from matplotlib.figure import Figure  # on use (slow); no pyplot: the caller's backend is left alone

    tasks = list(records[0].tasks)
    steps = [r.step for r in records]
    shares = [r.shares("weighted_grad_norms", tasks) for r in records]
    figure = Figure(figsize=(13, 3.6))
    share_ax, update_ax, pair_ax = figure.subplots(1, 3)
    for task in tasks:
        label = TASK_LABELS.get(task, task)
        share_ax.plot(*window_means(steps, [s[task] if s else None for s in shares], points), label=label)
        update_ax.plot(*window_means(steps, [r.group("cos_to_update").get(task) for r in records], points),
                       label=label)
    share_ax.axhline(rules.AT_RISK_FRACTION_OF_EQUAL / len(tasks), color="grey", linestyle="--", linewidth=1,
                     label="at-risk line")
    share_ax.set_yscale("log")
    for key in records[0].cos:
        pair_ax.plot(*window_means(steps, [r.cos.get(key) for r in records], points),
                     label=" / ".join(TASK_LABELS.get(t, t) for t in key.split(PAIR_SEPARATOR)), linewidth=1)
    for ax in (update_ax, pair_ax):
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_ylim(-1, 1)
    for ax, title in ((share_ax, "contribution share w_i‖g_i‖ / Σ_j w_j‖g_j‖"), (update_ax, "cos(g_i, update)"),
                      (pair_ax, "cos(g_i, g_j)")):
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    figure.tight_layout()
    with atomic_target(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    return path
