"""Uniform weighting (equal weights, "EW", linear scalarization).

Rule: ``L = Σ_i L_i``, so ``d = Σ_i g_i`` (weights all 1). This is LibMTL's ``EW`` and Nash-MTL's ``ls``; the
mean ``(1/K) Σ_i L_i`` differs only by the constant K, which Adam ignores. Heads get their raw loss gradients
(they are weighted by 1). No options, no state, one backward.
"""

import torch

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer


@register_balancer
class Uniform(Balancer):
    """Sum of the task losses."""

    name = "uniform"
    description = "Equal weights: the gradient of the summed losses (baseline)."
    requires = "losses"

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        return Aggregation(weights=torch.ones(self.num_tasks, dtype=torch.float64))
