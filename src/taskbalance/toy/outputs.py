"""Writing a toy run's artefacts to one directory: trajectories.png, results.md, results.csv, results.json."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from taskbalance.atomic import atomic_write_text
from taskbalance.results.render import markdown_table as render_markdown
from taskbalance.toy.methods import problem_defaults
from taskbalance.toy.plot import save_figure, trajectories_figure
from taskbalance.toy.presets import ToySettings, get_preset
from taskbalance.toy.problem import ToyProblem
from taskbalance.toy.report import (
    MOVING_WINDOW,
    Outcome,
    csv_text,
    json_text,
    markdown_table,
    reached_counts,
)
from taskbalance.toy.runner import LEARNING_RATE, ToyRun

ARTEFACTS = ("trajectories.png", "results.md", "results.csv", "results.json")


def run_metadata(
    settings: ToySettings, run: ToyRun, problem: ToyProblem, tolerance: float, moving_threshold: float
) -> dict[str, Any]:
    """What was run and how long it took, for results.json and results.md."""
    return {
        "preset": settings.preset,
        "preset_source": get_preset(settings.preset).source,
        "loss_scales": list(settings.scales),
        "starts": [list(s) for s in settings.starts],
        "steps": run.steps,
        "optimizer": f"Adam(lr={LEARNING_RATE})",
        "dtype": settings.dtype,
        "tolerance": tolerance,
        "moving_window": MOVING_WINDOW,
        "moving_threshold": moving_threshold,
        "optimum": problem.optimum().tolist(),
        "methods": [
            {
                "label": s.label,
                "name": s.name,
                "balancer_options": problem_defaults(s.name, problem) | dict(s.options),
                "runner_max_norm": s.max_norm,
                "seconds_in_method": t,
            }
            for s, t in zip(run.specs, run.method_seconds)
        ],
        "total_seconds": run.total_seconds,
        "failures": {run.specs[m].label: message for m, message in run.failures.items()},
        "torch": torch.__version__,
    }


def write_outputs(
    out: Path,
    settings: ToySettings,
    run: ToyRun,
    problem: ToyProblem,
    outcomes: Sequence[Outcome],
    tolerance: float,
    moving_threshold: float,
) -> list[Path]:
    """Write every artefact into ``out`` (atomically, creating it) and return their paths."""
    meta = run_metadata(settings, run, problem, tolerance, moving_threshold)
    figure = trajectories_figure(run, problem, outcomes, title=f"toy preset {settings.preset}")
    save_figure(figure, out / "trajectories.png")
    atomic_write_text(out / "results.md", _markdown(meta, outcomes))
    atomic_write_text(out / "results.csv", csv_text(outcomes))
    atomic_write_text(out / "results.json", json_text(outcomes, meta))
    return [out / name for name in ARTEFACTS]


def _markdown(meta: dict[str, Any], outcomes: Sequence[Outcome]) -> str:
    scales = meta["loss_scales"]
    lines = [
        f"# Toy benchmark, preset `{meta['preset']}`",
        "",
        f"{meta['preset_source']}.",
        "",
        (
            f"Losses ℓ1 = {scales[0]:g}·L1, ℓ2 = {scales[1]:g}·L2; {meta['steps']} steps of {meta['optimizer']} in "
            f"{meta['dtype']}; reached = final point within {meta['tolerance']:g} of the exact Pareto set / of the "
            f"minimiser ({meta['optimum'][0]:.4f}, {meta['optimum'][1]:.4f}) of ℓ1 + ℓ2; still moving = moved more "
            f"than {meta['moving_threshold']:g} over the last {meta['moving_window']} steps. "
            f"Run time {meta['total_seconds']:.1f} s."
        ),
        "",
    ]
    seconds = {m["label"]: m["seconds_in_method"] for m in meta["methods"]}
    summary = [
        [label, f"{pareto}/{total}", f"{optimum}/{total}", f"{moving}/{total}", f"{seconds[label]:.1f}"]
        for label, (pareto, optimum, moving, total) in reached_counts(outcomes).items()
    ]
    header = ["method", "reached Pareto set", "reached optimum", "still moving", "seconds in method"]
    return "\n".join(lines) + "\n" + render_markdown(header, summary) + "\n" + markdown_table(outcomes)
