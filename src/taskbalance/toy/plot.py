"""The trajectories figure: one column per method; top row parameter space (contours of ℓ1 + ℓ2, the exact Pareto
set, the optimum), bottom row loss space (the Pareto front). Built on a bare ``Figure`` (no pyplot state).

Each start has its own colour; a trajectory fades in with time (light at the start, full colour at the end), starts
are black dots and end points squares: filled when the run had stopped, hollow when it was still moving at the end
(``toy.report``), so a stalled or unfinished run is not mistaken for one that arrived. Both panels are square; the
legend (≥ 10 pt) lists each thing once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from taskbalance.atomic import atomic_target
from taskbalance.toy.problem import (
    PAPER_PARETO_X2,
    PARETO_X1_RANGE,
    ToyProblem,
    pareto_set,
)
from taskbalance.toy.report import Outcome
from taskbalance.toy.runner import ToyRun

_EXTENT = 11.0  # CAGrad's plots span [-11, 11]²
_GRID = 300
_MAX_DRAWN_POINTS = 2000
_PANEL_INCHES = 4.0
_FADE_FROM = 0.12  # opacity of a trajectory's first segment
_LEGEND_POINTS = 10
_FRONT_STYLE: dict[str, Any] = {"color": "grey", "linewidth": 5, "alpha": 0.6, "zorder": 1}


def trajectories_figure(run: ToyRun, problem: ToyProblem, outcomes: Sequence[Outcome], title: str = "") -> Figure:
    """Build the figure (2 rows × one column per method); ``outcomes`` (from ``summarize``) mark moving ends."""
    n_methods, n_starts = len(run.specs), run.points.shape[2]
    if len(outcomes) != n_methods * n_starts:
        raise ValueError(f"expected {n_methods * n_starts} outcomes (methods × starts), got {len(outcomes)}")
    figure = Figure(
        figsize=(max(_PANEL_INCHES * n_methods, 2.5 * _PANEL_INCHES), 2 * _PANEL_INCHES + 2.0), layout="constrained"
    )
    axes = figure.subplots(2, n_methods, squeeze=False)
    stride = max(1, run.steps // _MAX_DRAWN_POINTS)
    points = torch.cat([run.points[::stride], run.points[-1:]]).numpy()  # always end on the final point
    losses = torch.cat([run.losses[::stride], run.losses[-1:]]).numpy()
    front = pareto_set(1001).numpy()
    front_losses = problem.losses(torch.from_numpy(front)).numpy()
    optimum = problem.optimum().numpy()
    optimum_losses = problem.losses(torch.from_numpy(optimum)[None])[0].numpy()
    grid_x1, grid_x2, grid_sum = _sum_contours(problem)
    colours = [f"C{s % 10}" for s in range(n_starts)]
    for m, spec in enumerate(run.specs):
        param_axes, loss_axes = axes[0, m], axes[1, m]
        param_axes.contour(grid_x1, grid_x2, grid_sum, levels=20, cmap="viridis", linewidths=0.8)
        param_axes.plot(*front.T, **_FRONT_STYLE)
        param_axes.plot(list(PARETO_X1_RANGE), [PAPER_PARETO_X2] * 2, "k:", linewidth=1)
        loss_axes.plot(*front_losses.T, **_FRONT_STYLE)
        for s, colour in enumerate(colours):
            moving = outcomes[m * n_starts + s].moving
            for panel, path in ((param_axes, points[:, m, s]), (loss_axes, losses[:, m, s])):
                _faded_line(panel, path, colour)
                panel.plot(*path[0], "o", color="k", markersize=5, zorder=4)
                panel.plot(*path[-1], "s", markersize=8, zorder=5, markeredgecolor=colour, markeredgewidth=2,
                           markerfacecolor="white" if moving else colour)
        param_axes.plot(*optimum, "*", color="k", markersize=14, zorder=6)
        loss_axes.plot(*optimum_losses, "*", color="k", markersize=14, zorder=6)
        failed = " (failed)" if m in run.failures else ""
        param_axes.set_title(f"{spec.label}{failed}", fontsize=11)
        _style(param_axes, "x1", "x2")
        param_axes.set_xlim(-_EXTENT, _EXTENT)
        param_axes.set_ylim(-_EXTENT, _EXTENT)
        param_axes.set_aspect("equal")
        _style(loss_axes, "ℓ1", "ℓ2")
        loss_axes.autoscale_view()
        loss_axes.set_box_aspect(1)
    starts = [f"start ({x1:g}, {x2:g})" for x1, x2 in points[0, 0]]
    handles = [Line2D([], [], color=c, linewidth=2) for c in colours] + _marker_handles()
    labels = starts + [
        "start", "end (stopped)", "end (still moving)", "min ℓ1 + ℓ2",
        "Pareto set / front (exact)", "papers' line x2 = −8.3552",
    ]
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3 * n_methods, 6),
                  fontsize=_LEGEND_POINTS, title="trajectories fade in with time", title_fontsize=_LEGEND_POINTS)
    s1, s2 = problem.scales
    figure.suptitle(f"{title}  (ℓ1 = {s1:g}·L1, ℓ2 = {s2:g}·L2, {run.steps} Adam steps)".strip(), fontsize=13)
    return figure


def _faded_line(axes: Axes, path: np.ndarray, colour: str) -> None:
    """Draw ``path`` (N×2) with opacity growing from ``_FADE_FROM`` at its start to 1 at its end."""
    segments = np.stack([path[:-1], path[1:]], axis=1)
    rgba = np.tile(to_rgba(colour), (len(segments), 1))
    rgba[:, 3] = np.linspace(_FADE_FROM, 1.0, len(segments))
    axes.add_collection(LineCollection(list(segments), colors=rgba, linewidths=1.6, zorder=3), autolim=True)


def _marker_handles() -> list[Line2D]:
    """Legend proxies for the markers and reference lines shared by every panel (each listed once)."""
    return [
        Line2D([], [], marker="o", color="k", linestyle="none", markersize=8),
        Line2D([], [], marker="s", color="k", markerfacecolor="k", linestyle="none", markersize=8),
        Line2D(
            [], [], marker="s", color="k", markerfacecolor="white", markeredgewidth=2, linestyle="none", markersize=8
        ),
        Line2D([], [], marker="*", color="k", linestyle="none", markersize=14),
        Line2D([], [], **_FRONT_STYLE),
        Line2D([], [], color="k", linestyle=":", linewidth=1),
    ]


def _sum_contours(problem: ToyProblem) -> tuple:
    axis = torch.linspace(-_EXTENT, _EXTENT, _GRID, dtype=torch.float64)
    x1, x2 = torch.meshgrid(axis, axis, indexing="xy")
    total = problem.losses(torch.stack([x1.reshape(-1), x2.reshape(-1)], dim=1)).sum(dim=1).reshape(x1.shape)
    return x1.numpy(), x2.numpy(), total.numpy()


def _style(axes: Axes, xlabel: str, ylabel: str) -> None:
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)


def save_figure(figure: Figure, path: Path, dpi: int = 110) -> None:
    """Render ``figure`` as PNG and write it atomically."""
    with atomic_target(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, facecolor="white")
