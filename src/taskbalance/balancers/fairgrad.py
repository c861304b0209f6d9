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

Deviation: the solver. The official call stops far from the root when the gradient norms differ by decades
(orthogonal gradients of norms (1e-3, 0.3, 1e2), α = 2: the root is w_0 = 1e4; the official call returns 6.9e3,
and the same call on the trace-normalised G with tolerances 1e-12, used here before, 1.6e3). The equations are
the stationarity conditions of the potential

    f(w) = ½ wᵀ G w − Σ_i φ(w_i),   φ(w) = α/(α−1) · w^{(α−1)/α}  (α ≠ 1),   φ(w) = log w  (α = 1),

since φ'(w) = w^{−1/α}: ∇f = G w − w^{−1/α} and ∇²f = G + diag(w^{−1/α−1} / α), positive definite on w > 0, so
f is strictly convex there and its stationary point is the unique solution. It exists when G is positive
definite (f is coercive and ∂f/∂w_i → −∞ as w_i → 0); it does not when a non-negative, non-zero combination of the
gradients vanishes (Σ λ_i g_i = 0 gives Σ λ_i (G w)_i = 0, so the (G w)_i cannot all be positive). Here: damped
Newton on f from ``w_i = G_ii^{−α/(α+1)}`` (the root for orthogonal gradients), the Newton system scaled by
``diag(w)`` and equilibrated; a step goes at most 90% of the way to ``w = 0`` and is halved until f decreases
(Armijo, with the change of f summed from per-task differences) or the residual halves (f alone cannot resolve
tasks whose terms are decades smaller). The start and the steps are scale-equivariant, so G is not normalised
(:func:`~taskbalance.balancers.solvers.fairness_newton`, shared with Nash-MTL, whose equation is the case α = 1).
Stop: the relative residual ``max_i |(G w)_i · w_i^{1/α} − 1|`` is ≤ 1e-10, or (when ``(G w)_i`` cancels strongly,
e.g. α < 1 with norms over several decades) every task's residual is within the rounding of ``(G w)_i``,
``K · eps · Σ_j |G_ij w_j| · w_i^{1/α}``, and ≤ 1e-6. Otherwise (no positive solution, e.g. exactly opposite
gradients, or a residual stuck above 1e-6) after 100 steps or a failed line search a ``RuntimeWarning`` gives both
residuals and the official least-squares problem's point is used (start ``1/K``, bounds ``(0, ∞)``, with the
analytic Jacobian), as the official code would.

Degenerate inputs: a task with a zero gradient (``G_ii ≤ 1e-20 · max_j G_jj``, a norm below 1e-10 of the largest)
makes ``(Gw)_i = 0 = w_i^{−1/α}`` unsatisfiable (``w_i → ∞`` in the official code); here such tasks get weight 0
(they contribute nothing to ``d`` either way) and the equation is solved for the others; all gradients zero gives
all weights 0. Stateless, deterministic.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import least_squares
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer
from taskbalance.balancers.solvers import clip_to_norm, fairness_newton, relative_residual

#: Squared gradient norm, relative to the largest, below which a task counts as having a zero gradient.
ZERO_GRADIENT = 1e-20


class FairGradOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: float = Field(2.0, gt=0, description="fairness exponent α (official run scripts: 2.0)")
    max_norm: float = Field(1.0, ge=0, description="clip ‖Jᵀw‖ of the shared update to this norm (0: no clipping)")


def solve_fairness_equation(gramian: np.ndarray, alpha: float) -> np.ndarray:
    """``w > 0`` with ``(G w)_i = w_i^{−1/α}`` for a Gramian with a positive diagonal (Newton on the potential).

    Falls back to the official least-squares point, with a ``RuntimeWarning``, when no positive solution is found.
    """
    w, converged = fairness_newton(gramian, alpha)
    if converged:
        return w
    newton_residual = float(relative_residual(gramian, w, alpha).max())
    k = gramian.shape[0]
    official = least_squares(
        lambda x: gramian @ x - (1 / x) ** (1 / alpha),
        np.ones(k) / k,
        jac=lambda x: gramian + np.diag(x ** (-1 / alpha - 1) / alpha),
        bounds=(0, np.inf),
    )
    warnings.warn(
        f"FairGrad: (Gw)_i = w_i^(-1/α) has no positive solution that Newton reached (relative residual "
        f"{newton_residual:.2g}; e.g. the task gradients are Pareto-stationary); using the official least-squares "
        f"point (relative residual {float(relative_residual(gramian, official.x, alpha).max()):.2g})",
        RuntimeWarning,
        stacklevel=2,
    )
    return official.x


def fair_allocation(gramian: Tensor, alpha: float) -> Tensor:
    """``w > 0`` with ``(G w)_i = w_i^{−1/α}`` (zero-gradient tasks get 0), before the ×K and the clipping."""
    k = gramian.shape[0]
    diagonal = gramian.diagonal()
    active = diagonal > ZERO_GRADIENT * float(diagonal.max().clamp_min(0))
    weights = torch.zeros(k, dtype=torch.float64)
    if not bool(active.any()):
        return weights
    solution = solve_fairness_equation(gramian[active][:, active].double().numpy(), alpha)
    weights[active] = torch.from_numpy(solution)
    return weights


def fairgrad_weights(gramian: Tensor, alpha: float = 2.0, max_norm: float = 1.0) -> Tensor:
    """FairGrad's coefficients of the task gradients: ``K w``, clipped so that ``‖Jᵀw‖ ≤ max_norm``."""
    return clip_to_norm(gramian.shape[0] * fair_allocation(gramian, alpha), gramian, max_norm)


@register_balancer
class FairGrad(Balancer):
    """α-fair allocation of the update among tasks: (Gw)_i = w_i^{−1/α}."""

    name = "fairgrad"
    description = "α-fair resource allocation: weights solve (Gw)_i = w_i^(-1/α) (Newton), ×K, clipped."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = FairGradOptions
    options: FairGradOptions

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        return Aggregation(weights=fairgrad_weights(inputs.gramian, self.options.alpha, self.options.max_norm))
