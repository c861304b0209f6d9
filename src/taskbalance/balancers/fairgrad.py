"""FairGrad: Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024, arXiv 2402.15638.
Official code: ``OptMN-Lab/fairgrad`` (``methods/weight_methods.py::FairGrad``).

Rule: α-fair utility maximisation ``max_d Σ_i (g_iᵀ d)^{1−α} / (1 − α)`` gives ``d = Σ_i w_i g_i`` with ``w > 0``
solving ``(G w)_i = g_iᵀ d = w_i^{−1/α}`` for every task. α → 0 is linear scalarisation, α = 1 is proportional
fairness (Nash-MTL's equation), α → ∞ approaches max-min fairness (MGDA-like).

Official code: ``scipy.optimize.least_squares(lambda x: A x − (1/x)^{1/α}, x0 = 1/K, bounds=(0, ∞))`` (TRF), then
``d = Σ_i w_i g_i`` multiplied by K in ``overwrite_grad`` (**×K** here too) and
``clip_grad_norm_(shared, max_norm=1.0)``; heads keep their raw loss gradients (``default_head_gradients="raw"``).
Defaults: ``alpha = 2.0`` (the official CLI default is 1.0, but every official ``run.sh`` — NYUv2, Cityscapes,
QM9, CelebA — uses 2.0), ``max_norm = 1.0`` (0 disables). The clipping is applied as a rescaling of the weights so
that ``‖Jᵀw‖ ≤ max_norm``, because the engine writes ``d = Jᵀw`` itself.

Deviations: (1) the equation is solved on the trace-normalised Gramian ``Ĝ = G / tr G`` and mapped back exactly: if
``Ĝ ŵ = ŵ^{−1/α}`` then ``w = tr(G)^{−α/(α+1)} ŵ`` solves ``G w = w^{−1/α}`` (the raw problem's solution grows like
``‖g‖^{−2α/(α+1)}``, which the official start ``1/K`` reaches poorly when gradients are small); (2) the analytic
Jacobian of the residual and tolerances of 1e-12 (scipy's default 1e-8) are passed to ``least_squares``. Degenerate
inputs: a task with a zero gradient (``G_ii ≤ 1e-12 · max_j G_jj``) makes ``(Gw)_i = 0 = w_i^{−1/α}`` unsatisfiable
(``w_i → ∞`` in the official code); here such tasks get weight 0 (they contribute nothing to ``d`` either way) and
the equation is solved for the others; all gradients zero gives all weights 0. When the equation has no positive
solution (e.g. exactly opposite gradients) the least-squares solution is used, as in the official code. Stateless,
deterministic.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import least_squares
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer
from taskbalance.balancers.solvers import clip_to_norm, trace_normalized

#: ``least_squares`` tolerances (scipy's defaults, 1e-8, leave residuals of ~1e-5 on hard cases).
TOLERANCE = 1e-12
#: Squared gradient norm, relative to the largest, below which a task counts as having a zero gradient.
ZERO_GRADIENT = 1e-12


class FairGradOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: float = Field(2.0, gt=0, description="fairness exponent α (official run scripts: 2.0)")
    max_norm: float = Field(1.0, ge=0, description="clip ‖Jᵀw‖ of the shared update to this norm (0: no clipping)")


def fair_allocation(gramian: Tensor, alpha: float) -> Tensor:
    """``w > 0`` with ``(G w)_i = w_i^{−1/α}`` (zero-gradient tasks get 0), before the ×K and the clipping."""
    k = gramian.shape[0]
    diagonal = gramian.diagonal()
    active = diagonal > ZERO_GRADIENT * float(diagonal.max().clamp_min(0))
    weights = torch.zeros(k, dtype=torch.float64)
    if not bool(active.any()):
        return weights
    normalized, trace = trace_normalized(gramian[active][:, active])
    a = normalized.numpy()
    m = a.shape[0]

    def residual(x: np.ndarray) -> np.ndarray:
        return a @ x - x ** (-1.0 / alpha)

    def jacobian(x: np.ndarray) -> np.ndarray:
        return a + np.diag(x ** (-1.0 / alpha - 1.0) / alpha)

    start = np.full(m, 1.0 / m)
    tolerances = {"ftol": TOLERANCE, "xtol": TOLERANCE, "gtol": TOLERANCE}
    solution = least_squares(residual, start, jac=jacobian, bounds=(0.0, np.inf), **tolerances)
    weights[active] = torch.from_numpy(solution.x) * trace ** (-alpha / (alpha + 1.0))
    return weights


def fairgrad_weights(gramian: Tensor, alpha: float = 2.0, max_norm: float = 1.0) -> Tensor:
    """FairGrad's coefficients of the task gradients: ``K w``, clipped so that ``‖Jᵀw‖ ≤ max_norm``."""
    return clip_to_norm(gramian.shape[0] * fair_allocation(gramian, alpha), gramian, max_norm)


@register_balancer
class FairGrad(Balancer):
    """α-fair allocation of the update among tasks: (Gw)_i = w_i^{−1/α}."""

    name = "fairgrad"
    description = "α-fair resource allocation: weights solve (Gw)_i = w_i^(-1/α) (least squares), ×K, clipped."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = FairGradOptions

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        return Aggregation(weights=fairgrad_weights(inputs.gramian, self.options.alpha, self.options.max_norm))
