"""Training-dynamics figures in the style of the paper's Figs. 6-16, from runs' ``diagnostics.jsonl``.

One panel per run (the paper's columns: Uniform, Grid Search, CAGrad, NashMTL, ...):

* ``cos_to_update.png``: cos(g_i, d) per task (Figs. 7, 9, 14)
* ``grad_norms.png``: ‖g_i‖ per task on the diagnosed layer (Figs. 8, 15, 16)
* ``weighted_grad_norms.png``: w_i‖g_i‖, each task's contribution to the update (Fig. 8 with the loss weights)
* ``pairwise_cos.png`` / ``pairwise_dot.png``: between every task pair (Figs. 10-13)
* ``weights.png``: the loss weights the method applied
* ``feature_distance.png``: L2 distance to the single-task features, when measured (Fig. 6)

Curves are averaged over windows of logged steps (the paper averages over 2k / 10k iterations).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from taskbalance.conventions import TASK_LABELS  # noqa: E402
from taskbalance.training.diagnostics import PAIR_SEPARATOR  # noqa: E402
from taskbalance.training.rundir import RunDir  # noqa: E402

#: quantity -> (file stem, y label, per-pair?)
FIGURES: dict[str, tuple[str, str, bool]] = {
    "cos_to_update": ("cos_to_update", "cos(task gradient, combined update)", False),
    "grad_norms": ("grad_norms", "task gradient norm ‖g_i‖", False),
    "weighted_grad_norms": ("weighted_grad_norms", "weighted task gradient norm w_i‖g_i‖", False),
    "cos": ("pairwise_cos", "cosine between task gradients", True),
    "dot": ("pairwise_dot", "dot product between task gradients", True),
    "weights": ("weights", "loss weight", False),
    "feature_distance": ("feature_distance", "L2 distance to single-task features", False),
}


def load_records(path: Path) -> list[dict[str, Any]]:
    """A run's diagnostic records; raises if the folder has none."""
    records = RunDir(Path(path)).diagnostics.read()
    if not records:
        raise FileNotFoundError(f"{path} has no diagnostics.jsonl records (train with diagnostics.every > 0)")
    return records


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Panel titles: the run folder names, with their parent folder when two runs share a name (study variants)."""
    names = [Path(p).name for p in paths]
    return [f"{Path(p).parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def window_means(steps: Sequence[int], values: Sequence[float | None], points: int) -> tuple[list[float], list[float]]:
    """Average consecutive records into at most ``points`` windows (x: mean step, y: mean value; None skipped)."""
    pairs = [(s, v) for s, v in zip(steps, values) if v is not None and math.isfinite(v)]
    if not pairs:
        return [], []
    size = max(1, math.ceil(len(pairs) / points))
    xs, ys = [], []
    for start in range(0, len(pairs), size):
        chunk = pairs[start : start + size]
        xs.append(sum(s for s, _ in chunk) / len(chunk))
        ys.append(sum(v for _, v in chunk) / len(chunk))
    return xs, ys


def _label(key: str) -> str:
    return " / ".join(TASK_LABELS.get(part, part) for part in key.split(PAIR_SEPARATOR))


def curves(records: Sequence[Mapping[str, Any]], quantity: str, points: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per task (or task pair) the windowed curve of ``quantity``."""
    keys: list[str] = []
    for record in records:
        for key in record.get(quantity) or {}:
            if key not in keys:
                keys.append(key)
    steps = [int(r["step"]) for r in records]
    return {key: window_means(steps, [(r.get(quantity) or {}).get(key) for r in records], points) for key in keys}


def plot_quantity(runs: Mapping[str, Sequence[Mapping[str, Any]]], quantity: str, out: Path, points: int = 50) -> Path | None:
    """One figure with a panel per run for ``quantity``; None when no run logged it."""
    stem, ylabel, _ = FIGURES[quantity]
    panels = {name: curves(records, quantity, points) for name, records in runs.items()}
    panels = {name: c for name, c in panels.items() if c}
    if not panels:
        return None
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False, sharey=quantity != "dot")
    for ax, (name, task_curves) in zip(axes.flat, panels.items()):
        for key, (xs, ys) in task_curves.items():
            ax.plot(xs, ys, label=_label(key), linewidth=1.5)
        if quantity in ("grad_norms", "weighted_grad_norms"):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes[0][0].set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.25 if rows == 1 else 0.12, wspace=0.25, hspace=0.45)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_runs(run_dirs: Sequence[Path], out: Path, points: int = 50) -> list[Path]:
    """Every diagnostics figure for the given runs, written into ``out``; returns the files written."""
    runs = {label: load_records(path) for label, path in zip(run_labels(run_dirs), run_dirs)}
    written = [plot_quantity(runs, quantity, out, points) for quantity in FIGURES]
    return [p for p in written if p is not None]
