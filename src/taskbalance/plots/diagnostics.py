"""Training-dynamics figures in the style of the paper's Figs. 6-16, from runs' ``diagnostics.jsonl``.

One panel per run (the paper's columns: Uniform, Grid Search, CAGrad, NashMTL, ...):

* ``cos_to_update.png``: cos(g_i, d) per task (Figs. 7, 9, 14)
* ``grad_norms.png``: ‖g_i‖ per task on the diagnosed layer (Figs. 8, 15, 16)
* ``weighted_grad_norms.png``: w_i‖g_i‖, each task's contribution to the update (Fig. 8 with the loss weights)
* ``pairwise_cos.png`` / ``pairwise_dot.png``: between every task pair (Figs. 10-13)
* ``weights.png``: the loss weights the method applied
* ``feature_distance.png``: L2 distance to the single-task features, when measured (Fig. 6)

Curves are averaged over windows of logged steps (the paper averages over 2k / 10k iterations). Runs given the
same label are the seeds of one arm: their panel draws the mean over seeds as a line and ± one sample std as a band.
Each panel has its own y scale (the cosines share [-1, 1]); norms, and weights spanning more than 20x, are on a log
scale. A study folder is expanded into its runs. This package does not import :mod:`taskbalance.training` (whose
report imports it): the logs are read with :mod:`taskbalance.jsonlines`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from taskbalance.conventions import PAIR_SEPARATOR, TASK_LABELS
from taskbalance.records import DIAGNOSTICS_FILE, DiagnosticsRecord, read_diagnostics
from taskbalance.results.stats import summarize

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
#: Quantities bounded in [-1, 1]: their panels share the y axis.
_SHARED_Y = ("cos_to_update", "cos")
#: Quantities always drawn on a log scale; ``weights`` switches to log when a panel spans more than _LOG_SPAN.
_LOG_Y = ("grad_norms", "weighted_grad_norms")
_LOG_SPAN = 20.0
#: Folder names of a study's seed level (``<arm>/seed-<n>``): dropped from labels so the seeds of an arm group.
_SEED_FOLDER = re.compile(r"^seed-\d+$")
#: Runs the study moved aside as stale (``<run>.stale-<hash>``) are not drawn.
_STALE = ".stale-"

Curve = tuple[list[float], list[float]]


def _diagnostics_every(path: Path) -> Any:
    """``diagnostics.every`` of the run's config.yaml (None when unreadable)."""
    try:
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    return (config.get("diagnostics") or {}).get("every") if isinstance(config, dict) else None


def load_records(path: Path) -> list[DiagnosticsRecord]:
    """A run's diagnostic records; raises, saying why, if the folder has none."""
    path = Path(path)
    records = read_diagnostics(path)
    if records:
        return records
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(
            f"{path} is not a run directory (no config.yaml) and holds no run with diagnostics records"
        )
    every = _diagnostics_every(path)
    if not every:
        raise FileNotFoundError(f"{path} has no diagnostics records: it was trained with diagnostics.every = {every} "
                                "(train with diagnostics.every > 0)")
    raise FileNotFoundError(
        f"{path} has no diagnostics records yet (diagnostics.every = {every}; no step logged so far)"
    )


def find_runs(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The run directories to draw and their labels: a path holding ``diagnostics.jsonl`` is one run (labelled by
    :func:`run_labels`); any other folder (a study) contributes every run below it that has one, labelled by its
    path inside the folder without the ``seed-<n>`` level, so that the seeds of an arm share a label."""
    runs: list[Path] = []
    labels: list[str] = []
    direct = [Path(p) for p in paths if (Path(p) / DIAGNOSTICS_FILE).is_file() or not Path(p).is_dir()]
    for path in map(Path, paths):
        if path in direct:
            runs.append(path)
            labels.append(run_labels(direct)[direct.index(path)])
            continue
        found = sorted(f.parent for f in path.rglob(DIAGNOSTICS_FILE) if _STALE not in str(f.relative_to(path)))
        if not found:
            load_records(path)  # raises with the reason
        for run in found:
            runs.append(run)
            labels.append("/".join(part for part in run.relative_to(path).parts if not _SEED_FOLDER.match(part)))
    return runs, labels


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


def curves(
    records: Sequence[DiagnosticsRecord], quantity: str, points: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Per task (or task pair) the windowed curve of ``quantity``."""
    keys: list[str] = []
    for record in records:
        for key in record.group(quantity):
            if key not in keys:
                keys.append(key)
    steps = [r.step for r in records]
    return {key: window_means(steps, [r.group(quantity).get(key) for r in records], points) for key in keys}


def seed_band(seed_curves: Sequence[Curve]) -> tuple[list[float], list[float], list[float]]:
    """Mean curve over seeds and its sample std per window (0 for one seed), over the windows every seed has."""
    length = min(len(xs) for xs, _ in seed_curves)
    xs = [sum(c[0][i] for c in seed_curves) / len(seed_curves) for i in range(length)]
    summaries = [summarize([c[1][i] for c in seed_curves]) for i in range(length)]
    return xs, [s.mean for s in summaries], [s.std or 0.0 for s in summaries]


def _panel(ax: Axes, runs: Sequence[Sequence[DiagnosticsRecord]], quantity: str, points: int) -> bool:
    """Draw one arm's curves (mean line, ± std band over seeds) on ``ax``; False when nothing was logged."""
    per_seed = [curves(records, quantity, points) for records in runs]
    keys = list(dict.fromkeys(key for c in per_seed for key in c))
    drawn = []
    for key in keys:
        seed_curves = [c[key] for c in per_seed if key in c and c[key][0]]
        if not seed_curves:
            continue
        xs, means, stds = seed_band(seed_curves)
        line, = ax.plot(xs, means, label=_label(key), linewidth=1.5)
        if len(seed_curves) > 1:
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        drawn += means
    if not drawn:
        return False
    positive = [v for v in drawn if v > 0]
    if quantity in _LOG_Y or (
        quantity == "weights" and len(positive) == len(drawn) and max(positive) > _LOG_SPAN * min(positive)
    ):
        ax.set_yscale("log")
    return True


def quantity_figure(
    runs: Mapping[str, Sequence[Sequence[DiagnosticsRecord]]], quantity: str, points: int = 50
) -> Figure | None:
    """One figure with a panel per arm (label -> the records of each of its seeds); None when no run logged it."""
    from matplotlib.figure import Figure  # imported on use (slow); no pyplot: leaves the caller's backend alone

    _, ylabel, _ = FIGURES[quantity]
    logged = {name: seeds for name, seeds in runs.items() if any(curves(r, quantity, points) for r in seeds)}
    if not logged:
        return None
    columns = min(4, len(logged))
    rows = math.ceil(len(logged) / columns)
    figure = Figure(figsize=(4 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False, sharey=quantity in _SHARED_Y)
    for ax, (name, seeds) in zip(axes.flat, logged.items()):
        _panel(ax, seeds, quantity, points)
        ax.set_title(name + (f" (mean ± std, {len(seeds)} seeds)" if len(seeds) > 1 else ""), fontsize="medium")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(logged):]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(ylabel)
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    figure.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(len(legend), 6), frameon=False)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.25 if rows == 1 else 0.12, wspace=0.3, hspace=0.45)
    return figure


def plot_quantity(runs: Mapping[str, Sequence[Sequence[DiagnosticsRecord]]], quantity: str, out: Path,
                  points: int = 50) -> Path | None:
    """Save :func:`quantity_figure` as ``out/<stem>.png`` atomically; None when no run logged ``quantity``."""
    from taskbalance.atomic import atomic_target

    figure = quantity_figure(runs, quantity, points)
    if figure is None:
        return None
    path = Path(out) / f"{FIGURES[quantity][0]}.png"
    with atomic_target(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path


def plot_runs(run_dirs: Sequence[Path], out: Path, points: int = 50, labels: Sequence[str] | None = None) -> list[Path]:
    """Every diagnostics figure for the given runs, written into ``out``; returns the files written.

    Runs with the same label are the seeds of one arm (one panel, mean and band). Without ``labels``, folders that
    are not runs (a study folder) are expanded into their runs (:func:`find_runs`).
    """
    if labels is None:
        run_dirs, labels = find_runs(run_dirs)
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} runs")
    grouped: dict[str, list[list[DiagnosticsRecord]]] = {}
    for label, path in zip(labels, run_dirs):
        grouped.setdefault(label, []).append(load_records(path))
    written = [plot_quantity(grouped, quantity, out, points) for quantity in FIGURES]
    return [p for p in written if p is not None]
