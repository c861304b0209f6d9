"""Radar chart of per-task improvements M_i over the single-task baseline (the paper's Fig. 4)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from taskbalance.conventions import TASK_LABELS
from taskbalance.atomic import atomic_target
from taskbalance.results.errors import ResultsError
from taskbalance.results.render import format_delta
from taskbalance.results.table import ResultsTable


def radar_chart(table: ResultsTable, out: str | os.PathLike[str], title: str | None = None, dpi: int = 150) -> Path:
    """Draw each non-baseline row's ``M_i`` (percent, one spoke per task) and save a PNG atomically.

    The dashed circle is the baseline (M_i = 0); the legend gives each method's Δm. Needs at least 3 tasks.
    """
    rows = [row for row in table.rows if not row.is_baseline]
    if not rows:
        raise ResultsError("the radar chart needs at least one run besides the baseline")
    if len(table.columns) < 3:
        raise ResultsError(f"a radar chart needs at least 3 tasks, the table has {len(table.columns)}")
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone; imported on use (slow)

    count = len(table.columns)
    angles = [2 * math.pi * i / count for i in range(count)]
    closed = angles + angles[:1]
    values = [v for row in rows for v in row.improvements]
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    margin = 0.1 * (high - low or 1.0)
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="polar")
    for row in rows:
        data = list(row.improvements) + [row.improvements[0]]
        ax.plot(closed, data, linewidth=1.5, label=f"{row.name} ({format_delta(row.delta_m)}%)")
        ax.fill(closed, data, alpha=0.1)
    ax.plot(closed, [0.0] * len(closed), "k--", linewidth=1, label="single-task (0%)")
    ax.set_ylim(low - margin, high + margin)
    ax.set_xticks(angles)
    ax.set_xticklabels([TASK_LABELS.get(c.task, c.task) for c in table.columns])
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.12), fontsize="small")
    ax.set_title(title or "M_i (%) vs single-task", pad=24)
    with atomic_target(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(out)
