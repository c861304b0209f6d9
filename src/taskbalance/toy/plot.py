"""The trajectories figure: one column per method; top row parameter space (contours of ℓ1 + ℓ2, the exact Pareto
set, the optimum), bottom row loss space (the Pareto front). Built on a bare ``Figure`` (no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from taskbalance.atomic import atomic_target
from taskbalance.toy.problem import (
    PAPER_PARETO_X2,
    PARETO_X1_RANGE,
    ToyProblem,
    pareto_set,
)
from taskbalance.toy.runner import ToyRun

_EXTENT = 11.0  # CAGrad's plots span [-11, 11]²
_GRID = 300
_MAX_DRAWN_POINTS = 2000
_PANEL_INCHES = 4.0


def trajectories_figure(run: ToyRun, problem: ToyProblem, title: str = "") -> Figure:
    """Build the figure (2 rows × one column per method)."""
    n_methods = len(run.specs)
    figure = Figure(figsize=(max(_PANEL_INCHES * n_methods, 2 * _PANEL_INCHES), 2 * _PANEL_INCHES + 1.2), layout="constrained")
    axes = figure.subplots(2, n_methods, squeeze=False)
    stride = max(1, run.steps // _MAX_DRAWN_POINTS)
    points = run.points[::stride].numpy()
    losses = run.losses[::stride].numpy()
    front = pareto_set(1001)
    front_losses = problem.losses(front).numpy()
    optimum = problem.optimum()
    optimum_losses = problem.losses(optimum[None])[0].numpy()
    grid_x1, grid_x2, grid_sum = _sum_contours(problem)
    colours = [f"C{s % 10}" for s in range(points.shape[2])]
    for m, spec in enumerate(run.specs):
        param_axes, loss_axes = axes[0, m], axes[1, m]
        param_axes.contour(grid_x1, grid_x2, grid_sum, levels=20, cmap="viridis", linewidths=0.8)
        param_axes.plot(*front.T.numpy(), color="grey", linewidth=5, alpha=0.6, zorder=1, label="Pareto set (exact)")
        param_axes.plot(list(PARETO_X1_RANGE), [PAPER_PARETO_X2] * 2, "k:", linewidth=1, label="papers' line x2=-8.3552")
        loss_axes.plot(*front_losses.T, color="grey", linewidth=5, alpha=0.6, zorder=1, label="Pareto front")
        for s, colour in enumerate(colours):
            start = f"start ({points[0, m, s, 0]:g}, {points[0, m, s, 1]:g})"
            param_axes.plot(points[:, m, s, 0], points[:, m, s, 1], color=colour, linewidth=1.5, zorder=3, label=start)
            loss_axes.plot(losses[:, m, s, 0], losses[:, m, s, 1], color=colour, linewidth=1.5, zorder=3)
            param_axes.plot(*points[0, m, s], "o", color="k", markersize=5, zorder=4)
            loss_axes.plot(*losses[0, m, s], "o", color="k", markersize=5, zorder=4)
        param_axes.plot(*optimum.numpy(), "*", color="k", markersize=14, zorder=5, label="min ℓ1+ℓ2")
        loss_axes.plot(*optimum_losses, "*", color="k", markersize=14, zorder=5, )
        failed = " (failed)" if m in run.failures else ""
        param_axes.set_title(f"{spec.label}{failed}", fontsize=10)
        _style(param_axes, "x1", "x2")
        param_axes.set_xlim(-_EXTENT, _EXTENT)
        param_axes.set_ylim(-_EXTENT, _EXTENT)
        param_axes.set_aspect("equal")
        _style(loss_axes, "ℓ1", "ℓ2")
    handles, labels = axes[0, 0].get_legend_handles_labels()  # the same in every column
    front_handle = axes[1, 0].get_legend_handles_labels()[0][0]
    figure.legend([*handles, front_handle], [*labels, "Pareto front (loss space)"], loc="outside lower center", ncols=min(5, 2 * n_methods), fontsize=8)
    s1, s2 = problem.scales
    figure.suptitle(f"{title}  (ℓ1 = {s1:g}·L1, ℓ2 = {s2:g}·L2, {run.steps} Adam steps)".strip(), fontsize=12)
    return figure


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
