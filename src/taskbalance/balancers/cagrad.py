"""CAGrad: Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021,
arXiv 2110.14048. Official code: ``Cranial-XIX/CAGrad`` (``nyuv2/utils.py::cagrad``).

Rule: ``max_d min_i g_iᵀ d`` s.t. ``‖d − g_0‖ ≤ c ‖g_0‖`` with ``g_0 = (1/K) Σ_i g_i``. Dual (Alg. 1):
``w* = argmin_{w ∈ Δ} g_wᵀ g_0 + √φ ‖g_w‖`` with ``g_w = Σ_i w_i g_i``, ``√φ = c ‖g_0‖``; then
``d = g_0 + (√φ / ‖g_w*‖) g_w*``. In Gramian form with ``A = G``, ``b = 1/K``: minimise ``xᵀ A b + √φ √(xᵀ A x)``,
``‖g_0‖ = √(bᵀ A b)``, and the weights of ``d`` are ``b + λ w*`` with ``λ = √φ / ‖g_w*‖``.

Official code and defaults: ``c = 0.4`` (NYUv2 ``run.sh``; 0.2 for Cityscapes), ``rescale = 1``: ``d / (1 + c²)``
(``rescale=2``: ``d / (1 + c)``; ``rescale=0``: none); then ``overwrite_grad`` multiplies by K, so **×K** here too:
``w = K (b + λ w*) / (1 + c²)``, and ``c = 0`` gives exactly ``uniform`` (the sum of the gradients). Heads keep their
raw loss gradients (the official code overwrites only the shared ``.grad``): ``default_head_gradients="raw"``.

Solver: SLSQP from ``1/K`` with bounds ``[0, 1]`` and ``Σ x = 1`` like the official code, with three changes that
only make the same problem better solved: the analytic gradient of the objective, a tight ``ftol``, and the solve on
the trace-normalised Gramian ``G / tr G`` (the minimiser ``w*`` and ``λ`` do not depend on a global scale of G; on
the raw Gramian the official absolute ``+1e-8`` safeguards dominate once gradients are ~1e-4). The safeguards become
relative to ``tr G``: ``√φ = c ‖g_0‖ + ε``, objective ``√(xᵀAx + ε)``, ``λ = √φ / (‖g_w‖ + ε)`` with ``ε = 1e-12``
on the unit-trace Gramian (with gradients of norm ~1, as in the official NYUv2 runs, the official 1e-8 is of that
relative size).

Deviation (factored form): the quadratic forms are evaluated as ``xᵀAx = ‖Fᵀx‖²`` with ``F Fᵀ`` the nearest positive
semi-definite matrix to ``A`` (eigenvalues clamped at 0, :func:`~taskbalance.balancers.solvers.psd_factor`). The
float64 Gramian of a float32 J is often slightly indefinite; the official ``√(xᵀAx + ε)`` then evaluates to NaN at
some SLSQP iterates (9–40 per solve were seen, issue 18) and the solver wanders. Pareto-stationary gradients: when
``‖g_w*‖ ≤ 1e-6`` on the unit-trace scale (the objective's resolution ``√ε``; e.g. a task with a zero gradient,
which ``w*`` then selects) or ``‖g_w*‖ ≤ 1e-3 Σ_i w*_i ‖g_i‖`` (a cancellation beyond the rounding of a Gramian summed
from float32 products, about ``√eps_32`` = 3e-4), ``λ = 0`` and ``d = K g_0 / rescale``. There the official
``λ g_w*`` (norm ``√φ``) points along ``g_w*/‖g_w*‖``, which rounding decides, with weights up to 1e8 (the official
test is ``‖g_w*‖ = 0``, with its absolute 1e-8); TorchJD returns d = 0 in that case. With
these thresholds the same J in float32 and in float64 gives the same ``min_i g_iᵀd`` (tested). An all-zero Gramian
(every gradient zero) returns the ``c = 0`` weights scaled by the rescale factor (``d = 0`` either way). c → ∞
tends to MGDA's direction; ``0 ≤ c < 1`` converges to a stationary point of the average loss. Stateless, deterministic.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer
from taskbalance.balancers.solvers import Rescale, conflict_averse_weights


class CAGradOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    c: float = Field(0.4, ge=0, description="radius of the ball around the mean gradient, in units of ‖g_0‖")
    rescale: Rescale = Field(1, description="divide the update by 1 (0), 1 + c² (1, official default) or 1 + c (2)")


def cagrad_weights(gramian: Tensor, c: float = 0.4, rescale: Rescale = 1) -> Tensor:
    """CAGrad's coefficients of the task gradients (×K, rescaled), from their Gramian."""
    return conflict_averse_weights(gramian, c, rescale)


@register_balancer
class CAGrad(Balancer):
    """Conflict-averse update: best worst-task improvement within a ball around the mean gradient."""

    name = "cagrad"
    description = "Maximise the worst task's improvement within a ball of radius c‖g_0‖ around the mean gradient."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = CAGradOptions
    options: CAGradOptions

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        return Aggregation(weights=cagrad_weights(inputs.gramian, self.options.c, self.options.rescale))
