"""Static (fixed) loss weights: the "Grid Search" arm of the study.

Rule: ``L = Σ_i λ_i L_i`` with constant ``λ`` chosen by a search on a validation metric (usually Δm% against
single-task baselines), so the shared update is ``d = Σ_i λ_i g_i`` and the heads get ``λ_i ∇L_i`` (weighted,
as in every loss weighting). There is no paper: the values the study starts from are the grid-searched weights of
Vandenhende et al., "Multi-Task Learning for Dense Prediction Tasks: A Survey", TPAMI 2021, arXiv 2004.13379
(``Multi-Task-Learning-PyTorch`` configs): NYUD semseg 1, depth 1, normals 10, edge 50; PASCAL-Context semseg 1,
human_parts 2, sal 5, normals 10, edge 50. Nash-MTL's ``LinearScalarization(task_weights=...)`` is the same rule.

Option ``weights``: one finite, non-negative weight per task (every task named, no unknown names); omitted, every
weight is 1 and the method equals ``uniform``. :func:`weight_grid` builds the candidate weight sets of a sweep.
No state, deterministic, one backward.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, BalancerError, StepInputs
from taskbalance.balancers.helpers import check_task_keys
from taskbalance.balancers.registry import register_balancer

Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class StaticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    weights: dict[str, Weight] | None = Field(
        None, description="task -> fixed loss weight (finite, >= 0, every task named); omitted: all 1 (= uniform)"
    )


def weight_grid(
    tasks: Sequence[str], values: Sequence[float] | Mapping[str, Sequence[float]]
) -> list[dict[str, float]]:
    """Every combination of candidate weights, one dict task -> weight per combination (the Cartesian product).

    Args:
        tasks: the task names, in order (the last task varies fastest).
        values: the candidate weights shared by every task, or task -> its own candidates (every task named;
            give a one-element list to hold a task fixed, e.g. ``{"semseg": [1.0], "edge": [1, 10, 50]}``).

    Raises:
        BalancerError: a task missing or unknown, an empty candidate list, or a weight that is negative or not finite.
    """
    tasks = tuple(tasks)
    if not tasks:
        raise BalancerError("weight_grid needs at least one task")
    if isinstance(values, Mapping):
        check_task_keys("weight_grid values", list(values), tasks)
        per_task = [list(values[t]) for t in tasks]
    else:
        per_task = [list(values)] * len(tasks)
    for task, candidates in zip(tasks, per_task):
        if not candidates:
            raise BalancerError(f"weight_grid: no candidate weights for task {task!r}")
        bad = [v for v in candidates if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise BalancerError(f"weight_grid: weights of task {task!r} must be finite and >= 0, got {bad}")
    return [{t: float(v) for t, v in zip(tasks, combination)} for combination in itertools.product(*per_task)]


@register_balancer
class Static(Balancer):
    """Fixed loss weights given by the user."""

    name = "static"
    description = "Fixed user-given loss weights (the grid-search arm); all 1 when omitted."
    requires = "losses"
    Options = StaticOptions
    options: StaticOptions
    weights: Tensor

    def __init__(self, tasks: Sequence[str], **kwargs: Any) -> None:
        super().__init__(tasks, **kwargs)
        given = self.options.weights
        if given is not None:
            check_task_keys(f"{self.name}: option weights", list(given), self.tasks)
        values = [1.0] * self.num_tasks if given is None else [given[t] for t in self.tasks]
        self.register_buffer("weights", torch.tensor(values, dtype=torch.float64), persistent=False)

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        return Aggregation(weights=self.weights.clone())
