"""Uncertainty Weighting (UW): Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for
Scene Geometry and Semantics", CVPR 2018, arXiv 1705.07115.

Rule: each task has a learnable log-variance ``s_i = log σ_i²`` and the objective is

    L(θ, s) = Σ_i ½ e^{−s_i} L_i(θ) + ½ s_i.

So the network is trained with loss weights ``w_i = ½ e^{−s_i}`` (heads weighted, the whole objective is
back-propagated in every implementation), and ``∂L/∂s_i = −½ e^{−s_i} L_i + ½``, whose zero is ``e^{s_i} = L_i``:
at the optimum the weight is ``1 / (2 L_i)``.

How it runs here: :meth:`aggregate` returns ``w`` (the engine back-propagates ``Σ_i w_i L_i`` into the model) and
**accumulates** the analytic ``∂L/∂s`` into ``log_vars.grad`` (like ``loss.backward()`` would), so ``s`` is stepped
by the user's optimizer: put ``balancer.parameters()`` in it (and zero it with the model's gradients). ``combine()``
accumulates the same gradient. The ``½ s_i`` term has no effect on the network.

Defaults: ``init = −0.5`` (``s_i(0)``, the value of the MTAN repository ``lorenmt/mtan`` and LibMTL); Nash-MTL and
TorchJD start at 0 (weights ½) and train ``s`` with Adam at lr 0.025 in its own parameter group, MTAN with the
model's optimizer. The paper's classification variant ``e^{−s} L + ½ s`` (no ½ on the loss) is not provided, as in
those codebases. There is no official code.

Degenerate losses: nothing is clipped. The optimum needs ``L_i > 0``; with ``L_i = 0`` the gradient on ``s_i`` is
``+½`` and ``s_i`` decreases without bound (its weight grows like ``e^{t·lr}``), which is the method's behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer


class UWOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    init: float = Field(-0.5, allow_inf_nan=False, description="initial s_i = log σ_i² (MTAN/LibMTL -0.5; Nash-MTL 0)")


def uw_weights(log_vars: Tensor) -> Tensor:
    """Loss weights ``w_i = ½ e^{−s_i}``."""
    return 0.5 * torch.exp(-log_vars)


def uw_log_var_grad(log_vars: Tensor, losses: Tensor) -> Tensor:
    """``∂/∂s_i`` of ``Σ_j ½ e^{−s_j} L_j + ½ s_j``: ``−½ e^{−s_i} L_i + ½``."""
    return 0.5 - uw_weights(log_vars) * losses


@register_balancer
class UncertaintyWeighting(Balancer):
    """Learned homoscedastic-uncertainty weights ``½ e^{−s_i}``; ``s`` is stepped by the user's optimizer."""

    name = "uw"
    description = "Uncertainty weighting: w_i = ½e^{-s_i}, s_i = log σ_i² learned by your optimizer (Kendall 2018)."
    requires = "losses"
    Options = UWOptions
    options: UWOptions

    def __init__(self, tasks: Sequence[str], **kwargs: Any) -> None:
        super().__init__(tasks, **kwargs)
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), self.options.init))

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        s = self.log_vars.detach().double().cpu()
        grad = uw_log_var_grad(s, inputs.losses).to(self.log_vars)
        if self.log_vars.grad is None:
            self.log_vars.grad = grad
        else:
            self.log_vars.grad.add_(grad)
        return Aggregation(weights=uw_weights(s))
