"""Validation curves of a study: each task's primary validation metric against the training step, per arm (and
one run's curve, which the report's convergence check reads).

Read from the runs' ``metrics.jsonl`` (the ``kind: val`` records). One panel per task; each arm's line is the mean
over its seeds, its band the seeds' minimum to maximum; the task's single-task arm is drawn dashed. The figure
shows whether the runs were trained long enough: converged curves flatten before the last evaluations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskbalance.atomic import atomic_target
from taskbalance.conventions import TASK_LABELS
from taskbalance.records import read_validation
from taskbalance.training.rundir import RunDir

#: (arm, task) -> step -> the seeds' values
Curves = dict[tuple[str, str], dict[int, list[float]]]


@dataclass(frozen=True)
class RunCurve:
    """One run's validation curve: (step, task -> primary metric) in step order, each task's direction and the step
    of the selected (best) evaluation."""

    points: list[tuple[int, dict[str, float]]]
    higher_is_better: dict[str, bool]
    best_step: int | None


def run_validation_curve(run_dir: RunDir) -> RunCurve:
    """The validation curve of one run from its ``metrics.jsonl`` (empty when it logged no validation)."""
    points: list[tuple[int, dict[str, float]]] = []
    directions: dict[str, bool] = {}
    best = None
    for record in read_validation(run_dir.root):
        points.append((record.step, record.primary_values()))
        directions.update(record.higher_is_better)
        if record.best:
            best = record.step
    return RunCurve(sorted(points, key=lambda p: p[0]), directions, best)


def validation_curves(out: Path, runs: Sequence[Any]) -> tuple[Curves, dict[str, str]]:
    """The primary validation metric per (arm, task) and step over the runs' seeds, and each task's primary metric
    name (``runs``: planned study runs with ``name`` and ``arm``)."""
    curves: Curves = defaultdict(lambda: defaultdict(list))
    primary: dict[str, str] = {}
    for run in runs:
        for record in read_validation(out / run.name):
            for task, value in record.primary_values().items():
                curves[(run.arm, task)][record.step].append(value)
                primary[task] = record.primary[task]
    return curves, primary


def plot_validation_curves(out: Path, runs: Sequence[Any], path: Path) -> Path | None:
    """Draw the validation curves of the finished or running ``runs`` of a study to ``path``; None without data."""
    curves, primary = validation_curves(out, runs)
    if not curves:
        return None
    import matplotlib.pyplot as plt

    tasks = list(primary)
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for (arm, curve_task), by_step in sorted(curves.items()):
            if curve_task != task:
                continue
            steps = sorted(by_step)
            values = [by_step[s] for s in steps]
            mean = [sum(v) / len(v) for v in values]
            single = arm.split("/")[-1].startswith("stl-")
            line, = ax.plot(steps, mean, linestyle="--" if single else "-", color="black" if single else None,
                            label=f"{arm} (n={max(len(v) for v in values)})", linewidth=1.2)
            ax.fill_between(steps, [min(v) for v in values], [max(v) for v in values], color=line.get_color(),
                            alpha=0.15)
        ax.set_title(f"{TASK_LABELS.get(task, task)}: validation {primary[task]}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    with atomic_target(path) as target:
        figure.savefig(target, dpi=110)
    plt.close(figure)
    return path
