"""What a toy run reached: per method and start, the final point, its distance to the exact Pareto set and to the
optimum of the summed losses, whether it was still moving at the end, and the table renderings (Markdown, CSV, JSON).

"Still moving" is measured on the trajectory, not on the method's gradient: the distance between the points
``MOVING_WINDOW`` steps before the end and at the end, above a threshold (default 0.01, i.e. 1 % of the most Adam
with lr 1e-3 can move a coordinate in that many steps). The update norm itself cannot tell a finished run from a
running one for every method: Nash-MTL's update has norm √K by construction (clipped to 1.0), also on the Pareto set.
A run still travelling down a valley at the end of its budget is the kind that float32 and float64 arithmetic (or
another budget) send to different end points.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor

from taskbalance.results.render import csv_table
from taskbalance.results.render import markdown_table as render_markdown
from taskbalance.toy.presets import DEFAULT_MOVING_THRESHOLD, DEFAULT_TOLERANCE
from taskbalance.toy.problem import ToyProblem, pareto_set
from taskbalance.toy.runner import ToyRun

_PARETO_SAMPLES = 4001
#: Steps over which "still moving" measures the distance travelled at the end of a run.
MOVING_WINDOW = 1000


@dataclass(frozen=True)
class Outcome:
    """Where one method ended from one start."""

    method: str
    start: tuple[float, float]
    final: tuple[float, float]
    final_losses: tuple[float, float]
    pareto_distance: float
    on_pareto: bool
    optimum_distance: float
    at_optimum: bool
    recent_move: float
    moving: bool
    failure: str | None = None


def distance_to_polyline(points: Tensor, curve: Tensor) -> Tensor:
    """Euclidean distance from each of ``points`` (N×2) to the polyline through ``curve`` (P×2, P >= 2) → (N,)."""
    a, b = curve[:-1], curve[1:]  # segments a→b, (P-1)×2
    ab = b - a
    ap = points[:, None, :] - a[None]  # N×(P-1)×2
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-300)).clamp(0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return (points[:, None, :] - closest).norm(dim=-1).min(dim=1).values


def recent_moves(run: ToyRun) -> Tensor:
    """Distance travelled over the last ``MOVING_WINDOW`` steps (all of them in a shorter run), M×S."""
    window = min(MOVING_WINDOW, run.steps)
    return (run.points[-1] - run.points[-1 - window]).double().norm(dim=-1)


def summarize(
    run: ToyRun,
    problem: ToyProblem,
    tolerance: float = DEFAULT_TOLERANCE,
    moving_threshold: float = DEFAULT_MOVING_THRESHOLD,
) -> list[Outcome]:
    """One :class:`Outcome` per (method, start), methods in run order."""
    final = run.points[-1].double()  # M×S×2
    moves = recent_moves(run)
    flat = final.reshape(-1, 2)
    pareto = distance_to_polyline(flat, pareto_set(_PARETO_SAMPLES)).reshape(final.shape[:2])
    optimum = (final - problem.optimum()).norm(dim=-1)
    outcomes = []
    for m, spec in enumerate(run.specs):
        for s in range(final.shape[1]):
            outcomes.append(
                Outcome(
                    method=spec.label,
                    start=_pair(run.starts[s]),
                    final=_pair(final[m, s]),
                    final_losses=_pair(run.losses[-1, m, s]),
                    pareto_distance=float(pareto[m, s]),
                    on_pareto=bool(pareto[m, s] <= tolerance),
                    optimum_distance=float(optimum[m, s]),
                    at_optimum=bool(optimum[m, s] <= tolerance),
                    recent_move=float(moves[m, s]),
                    moving=bool(moves[m, s] > moving_threshold),
                    failure=run.failures.get(m),
                )
            )
    return outcomes


def _pair(t: Tensor) -> tuple[float, float]:
    return (float(t[0]), float(t[1]))


_COLUMNS = (
    "method", "start", "final x", "final losses", "dist. Pareto", "Pareto", "dist. optimum", "optimum",
    f"moved, last {MOVING_WINDOW} steps", "still moving",
)


def _cells(outcome: Outcome) -> list[str]:
    def fmt(pair: tuple[float, float]) -> str:
        return f"({pair[0]:.4g}, {pair[1]:.4g})"

    reached = "failed" if outcome.failure else None
    return [
        outcome.method,
        fmt(outcome.start),
        fmt(outcome.final),
        fmt(outcome.final_losses),
        f"{outcome.pareto_distance:.4f}",
        reached or ("yes" if outcome.on_pareto else "no"),
        f"{outcome.optimum_distance:.4f}",
        reached or ("yes" if outcome.at_optimum else "no"),
        f"{outcome.recent_move:.4f}",
        "yes" if outcome.moving else "no",
    ]


def table_rows(outcomes: Sequence[Outcome]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Column headers and formatted cells (shared by the Markdown table and the console table)."""
    return _COLUMNS, [_cells(o) for o in outcomes]


def markdown_table(outcomes: Sequence[Outcome]) -> str:
    """The outcomes as a GitHub Markdown table."""
    return render_markdown(*table_rows(outcomes))


_CSV_COLUMNS = (
    "method", "start_x1", "start_x2", "final_x1", "final_x2", "loss1", "loss2",
    "pareto_distance", "on_pareto", "optimum_distance", "at_optimum", "recent_move", "moving", "failure",
)


def csv_text(outcomes: Sequence[Outcome]) -> str:
    """The outcomes as CSV, one numeric column per coordinate."""
    rows = [
        [o.method, *o.start, *o.final, *o.final_losses, o.pareto_distance, o.on_pareto,
         o.optimum_distance, o.at_optimum, o.recent_move, o.moving, o.failure or ""]
        for o in outcomes
    ]
    return csv_table(_CSV_COLUMNS, rows)


def json_text(outcomes: Sequence[Outcome], meta: Mapping[str, Any]) -> str:
    """``{"meta": ..., "outcomes": [...]}`` as indented JSON."""
    return json.dumps({"meta": dict(meta), "outcomes": [asdict(o) for o in outcomes]}, indent=2) + "\n"


def reached_counts(outcomes: Sequence[Outcome]) -> dict[str, tuple[int, int, int, int]]:
    """Per method: (starts that reached the Pareto set, that reached the optimum, still moving at the end, starts)."""
    counts: dict[str, tuple[int, int, int, int]] = {}
    for o in outcomes:
        pareto, optimum, moving, total = counts.get(o.method, (0, 0, 0, 0))
        ok = o.failure is None
        counts[o.method] = (
            pareto + (ok and o.on_pareto),
            optimum + (ok and o.at_optimum),
            moving + o.moving,
            total + 1,
        )
    return counts

