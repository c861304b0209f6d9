"""Radar chart of per-task improvements M_i over the single-task baseline (the paper's Fig. 4), with the spread
over seeds."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from taskbalance.atomic import atomic_target
from taskbalance.conventions import TASK_LABELS
from taskbalance.results.errors import ResultsError
from taskbalance.results.render import format_delta, format_mean_std
from taskbalance.results.table import ResultsTable, Row

if TYPE_CHECKING:
    from matplotlib.figure import Figure


#: The chart's default title (mathtext renders ``$M_i$`` as M with subscript i).
RADAR_TITLE = r"Per-task change against single-task, $M_i$ (%)"


def radar_figure(table: ResultsTable, title: str | None = None) -> Figure:
    """Each non-baseline row's mean ``M_i`` over seeds (percent, one spoke per task) with a shaded band of ± one
    sample std when the row has several seeds; the dashed circle is the baseline (M_i = 0) and the legend gives
    each row's Δm (mean ± std). Needs at least 3 tasks."""
    rows = [row for row in table.rows if not row.is_baseline]
    if not rows:
        raise ResultsError("the radar chart needs at least one run besides the baseline")
    if len(table.columns) < 3:
        raise ResultsError(f"a radar chart needs at least 3 tasks, the table has {len(table.columns)}")
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone; imported on use (slow)

    count = len(table.columns)
    angles = [2 * math.pi * i / count for i in range(count)]
    closed = angles + angles[:1]
    bands = {row.name: _band(row) for row in rows}
    values = [v for low, high in bands.values() for v in (*low, *high)]
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    margin = 0.1 * (high - low or 1.0)
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="polar")
    for row in rows:
        means = [m.mean for m in row.improvements]
        line, = ax.plot(closed, means + means[:1], linewidth=1.5,
                        label=f"{row.name} (Δm {format_mean_std(row.delta_m, format_delta)}%, n={row.n})")
        band_low, band_high = bands[row.name]
        if band_low != band_high:
            ax.fill_between(
                closed, band_low + band_low[:1], band_high + band_high[:1], color=line.get_color(), alpha=0.2
            )
    circle = [2 * math.pi * i / 120 for i in range(121)]
    ax.plot(circle, [0.0] * len(circle), "k--", linewidth=1, label="single-task (0%)")
    ax.set_ylim(low - margin, high + margin)
    ax.set_xticks(angles)
    ax.set_xticklabels([TASK_LABELS.get(c.task, c.task) for c in table.columns])
    spread = any(row.n > 1 for row in rows)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize="small",
              title="lines: mean over seeds; bands: ± one sample std" if spread else None, title_fontsize="small")
    ax.set_title(title or RADAR_TITLE, pad=36)
    return fig


def _band(row: Row) -> tuple[list[float], list[float]]:
    """Per task ``mean − std`` and ``mean + std`` (the mean twice for one seed)."""
    spread = [m.std or 0.0 for m in row.improvements]
    return (
        [m.mean - s for m, s in zip(row.improvements, spread)],
        [m.mean + s for m, s in zip(row.improvements, spread)],
    )


def radar_chart(table: ResultsTable, out: str | os.PathLike[str], title: str | None = None, dpi: int = 150) -> Path:
    """Draw :func:`radar_figure` and save it as a PNG atomically."""
    fig = radar_figure(table, title)
    with atomic_target(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(out)
