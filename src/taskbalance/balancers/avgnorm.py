"""AvgNorm: Guo, Yu, Bai, Guo, Ruan, Li, Zheng, "Revisit the Imbalance Optimization in Multi-task Learning:
An Experimental Analysis", arXiv 2509.23915 (2025), Eq. (6).

Rule: with ``g_i = ∇_W L_i`` on the last shared layer ``W``,
``w_i = S / ‖g_i‖`` with ``S = ‖Σ_j g_j‖``, and ``L = Σ_i w_i L_i`` with the weights treated as constants.
In Gramian form ``‖g_i‖ = √G_ii`` and ``S = √(1ᵀ G 1)``; every task then contributes a vector of norm S to
the last-layer update.

Defaults: source ``last_layer`` (the paper: "using the gradient of the last layer of the shared backbone can be
sufficient"); heads weighted (the weights are loss weights). ``eps`` (1e-12) guards ``‖g_i‖ = 0``: a task with a
zero gradient gets weight 0 (it contributes nothing either way) instead of 1/0. There is no official code; the
paper leaves open whether S is the norm of the sum (as written, used here) or a mean of norms; option
``reference="mean_norm"`` uses ``S = mean_j ‖g_j‖`` instead.
"""

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer


class AvgNormOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reference: Literal["sum_norm", "mean_norm"] = Field("sum_norm", description="S = ‖Σ g_j‖ (paper) or mean ‖g_j‖")
    eps: float = Field(1e-12, ge=0, description="gradient norms below this get weight 0")


def avgnorm_weights(gramian: torch.Tensor, reference: str = "sum_norm", eps: float = 1e-12) -> torch.Tensor:
    """``w_i = S / ‖g_i‖`` from the Gramian of the task gradients."""
    norms = gramian.diagonal().clamp_min(0).sqrt()
    scale = gramian.sum().clamp_min(0).sqrt() if reference == "sum_norm" else norms.mean()
    return torch.where(norms > eps, scale / norms.clamp_min(eps), torch.zeros_like(norms))


@register_balancer
class AvgNorm(Balancer):
    """Scale every task loss by (norm of the summed gradient) / (its own gradient norm)."""

    name = "avgnorm"
    description = "w_i = ‖Σ_j g_j‖ / ‖g_i‖ on the last shared layer (the paper's gradient-norm balancing)."
    requires = "gramian"
    default_source = "last_layer"
    Options = AvgNormOptions
    options: AvgNormOptions

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        return Aggregation(weights=avgnorm_weights(inputs.gramian, self.options.reference, self.options.eps))
