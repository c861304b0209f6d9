"""Nash-MTL: Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task Learning as a Bargaining
Game", ICML 2022, arXiv 2202.01017. Official code: ``AvivNavon/nash-mtl`` (``methods/weight_methods.py::NashMTL``).

Rule: the Nash bargaining solution ``Δθ = argmax_{‖Δθ‖ ≤ ε} Σ_i log(g_iᵀ Δθ)`` is ``Δθ = Σ_i α_i g_i`` with
``α > 0`` solving ``(G α)_i = 1 / α_i`` for every task (``α_i g_iᵀ d = 1``). Orthogonal gradients give
``α_i = 1/‖g_i‖``; scaling one task's loss by ``s`` divides its ``α_i`` by ``s`` and leaves ``d`` unchanged; at the
solution ``‖d‖² = K``.

Deviation (solver). The official code runs the concave-convex procedure (paper §3.2: a cvxpy/ECOS convex sub-problem
per iteration, at most ``optim_niter`` = 20 of them, stopping at ``‖Ĝα − 1/α‖ < 1e-3``). It stops short of the
solution or fails outright when the gradient norms differ by decades: with 5–6 tasks whose norms span 1e6 it
returned non-solutions (issue 18: bargaining residual up to 1.5e3, ``‖d‖`` 39–61 instead of √K; more iterations did
not help; here, on 10 random problems for each of K = 5, 6, 8: no solution at all or residuals up to 6.5, ``‖d‖`` up
to 217); a start with ``(G α)_i < 0`` makes its first sub-problem unbounded (the step then reuses the previous α).
Here the same equations are solved directly: they are the stationarity conditions of the strictly convex potential
``f(α) = ½ αᵀGα − Σ_i log α_i`` (FairGrad's potential at α = 1), minimised by damped Newton in relative (log-space)
coordinates with an Armijo line search, on ``Ĝ = G / ‖G‖_F`` (normalised; the steps are equilibrated by the
diagonal, so the per-task scales do not matter) — :func:`~taskbalance.balancers.solvers.fairness_newton`. It starts
from the previous step's ``α̂`` (the warm start) and, if that does not converge, from the orthogonal root ``α̂_i =
Ĝ_ii^{−1/2}``; ``optim_niter`` (default 20) caps the Newton steps of each start (4–5 are typical, at most 9 over
1200 random problems with K = 3…8 and norm spans of 1e6). A solution is accepted when the scale-free residual
``max_i |α_i g_iᵀd / mean_j(α_j g_jᵀd) − 1|`` is ≤ 1e-6. A solution exists unless a non-negative, non-zero
combination of the gradients vanishes (Pareto-stationary gradients, e.g. two opposite ones, or a task with a zero
gradient); then, and whenever the residual test fails, the step reuses the previous α (ones at the first step; the
official "skipping") and a ``RuntimeWarning`` with the residual is issued once per balancer. An all-zero Gramian
reuses the previous α silently (``d = 0`` anyway).

Two tasks (exact): for K = 2 the equations ``a α1² + b α1 α2 = 1``, ``b α1 α2 + c α2² = 1`` (``G = [[a, b], [b, c]]``)
give ``a α1² = c α2²`` and hence ``α_i = 1 / (‖g_i‖ √(1 + ρ))`` with ``ρ = b / √(ac)`` the cosine between the two
gradients. This closed form is used whenever K = 2 (microseconds per step); the general solver agrees with it to
1e-6 (tested); ``optim_niter`` does not apply to K = 2. No solution exists when a gradient is zero or the two are
exactly opposite (ρ = -1): then the previous α is reused, with the warning.

Scaling: the problem is solved on ``Ĝ = G / ‖G‖_F`` and the solution ``α̂`` (``Ĝ α̂ = 1/α̂``) is mapped back with
``α = α̂ / √‖G‖_F``, which solves ``G α = 1/α``; ``α̂`` is the warm start of the next step (scale-free).

Defaults (official): ``optim_niter=20``, ``update_weights_every=1`` (α is recomputed every that many steps and
reused in between), ``max_norm=1.0``. The official code back-propagates ``Σ α_i L_i`` (heads weighted by the
unclipped α) and then clips the shared gradient with ``clip_grad_norm_(shared, 1.0)``; since the engine writes
``d = Jᵀw`` itself, the clipping is a rescaling of the shared weights so that ``‖Jᵀ w‖ ≤ max_norm`` (as TorchJD
does; ``max_norm=0`` disables it), while the heads keep the unclipped α (``default_head_gradients="weighted"``).
With the default the shared update always has norm 1 at K ≥ 2 (``‖d‖ = √K`` before clipping). With
``source="features"`` the clipping applies to the norm on the features. No ×K: α is not a convex combination.

State: the previous α (weights reused on failure and between updates) and α̂ (warm start), as buffers in
``state_dict()``. Deterministic.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer
from taskbalance.balancers.solvers import clip_to_norm, fairness_newton

#: Largest scale-free bargaining residual ``max_i |α_i g_iᵀd / mean_j(α_j g_jᵀd) − 1|`` of an accepted solution.
RESIDUAL_LIMIT = 1e-6
#: Squared gradient norm, relative to the largest, below which a task counts as having a zero gradient.
ZERO_GRADIENT = 1e-20


class NashMTLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    optim_niter: int = Field(
        20, ge=1, description="maximum Newton steps per start of a solve (official: 20 CCP iterations)"
    )
    update_weights_every: int = Field(1, ge=1, description="recompute α every this many steps, reuse it in between")
    max_norm: float = Field(1.0, ge=0, description="clip ‖Jᵀw‖ of the shared update to this norm (0: no clipping)")


def bargaining_residual(gramian: Tensor, alpha: Tensor) -> float:
    """``max_i |α_i g_iᵀd / mean_j(α_j g_jᵀd) − 1|`` with ``g_iᵀd = (G α)_i``: zero exactly at a solution up to a
    global scale of α (so also after the clipping), whatever the scale of G; inf when the mean is not positive."""
    products = alpha.double() * (gramian.double() @ alpha.double())
    mean = float(products.mean())
    if not mean > 0:
        return math.inf
    return float((products / mean - 1.0).abs().max())


class NashSolution(NamedTuple):
    """A solve's outcome: ``alpha`` (solving ``G α = 1/α``) and ``alpha_hat`` (for ``G / ‖G‖_F``), or None for both
    when no solution was reached; ``residual``: the scale-free residual of the solution or of the best attempt."""

    alpha: Tensor | None
    alpha_hat: Tensor | None
    residual: float


def nash_two_tasks(gramian: Tensor) -> tuple[Tensor, Tensor] | None:
    """The exact solution of ``(G α)_i = 1/α_i`` for two tasks (module docstring); ``(α, α̂)`` as
    :func:`nash_mtl_solve` returns them. None when no solution exists (a zero or exactly opposite gradient)."""
    g = gramian.detach().double().cpu()
    scale = float(torch.linalg.matrix_norm(g))
    a, b, c = float(g[0, 0]), float(g[0, 1]), float(g[1, 1])
    if not (scale > 0 and a > 0 and c > 0 and math.isfinite(scale)):
        return None
    one_plus_cosine = 1.0 + max(-1.0, min(1.0, b / math.sqrt(a * c)))
    if not one_plus_cosine > 0:
        return None
    alpha = 1.0 / torch.sqrt(torch.tensor([a, c], dtype=torch.float64) * one_plus_cosine)
    return alpha, alpha * math.sqrt(scale)


def nash_mtl_solve(gramian: Tensor, start: Tensor | None = None, optim_niter: int = 20) -> NashSolution:
    """Solve ``(G α)_i = 1/α_i`` (K ≥ 1) by damped Newton on ``Ĝ = G / ‖G‖_F`` (module docstring).

    ``start`` is a warm start for ``α̂`` (used when positive and finite); the orthogonal root follows if it does not
    converge. The solution is accepted when its scale-free residual is ≤ :data:`RESIDUAL_LIMIT`.
    """
    g = gramian.detach().double().cpu()
    scale = float(torch.linalg.matrix_norm(g))
    if not (scale > 0 and math.isfinite(scale)):
        return NashSolution(None, None, math.inf)
    normalized = (g / scale).numpy()
    diagonal = normalized.diagonal()
    if not bool(np.all(diagonal > ZERO_GRADIENT * diagonal.max())):
        return NashSolution(None, None, math.inf)  # a task with a zero gradient: (G α)_i = 0 ≠ 1/α_i
    starts: list[np.ndarray | None] = [None]
    if start is not None:
        warm = start.detach().double().cpu().numpy()
        if warm.shape == diagonal.shape and bool(np.all(np.isfinite(warm)) and np.all(warm > 0)):
            starts.insert(0, warm)
    best = math.inf
    for initial in starts:
        alpha_hat, _ = fairness_newton(normalized, 1.0, initial, optim_niter)
        candidate = torch.from_numpy(alpha_hat.copy())
        residual = bargaining_residual(torch.from_numpy(normalized), candidate)
        if residual <= RESIDUAL_LIMIT:
            return NashSolution(candidate / math.sqrt(scale), candidate, residual)
        best = min(best, residual)
    return NashSolution(None, None, best)


@register_balancer
class NashMTL(Balancer):
    """Nash bargaining between tasks: α_i g_iᵀd = 1 for every task."""

    name = "nashmtl"
    description = "Nash bargaining solution α_i (Gα)_i = 1, solved by damped Newton on its convex potential."
    requires = "gramian"
    default_head_gradients = "weighted"
    Options = NashMTLOptions
    options: NashMTLOptions
    alpha: Tensor
    alpha_normalized: Tensor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("alpha", torch.ones(self.num_tasks, dtype=torch.float64))
        self.register_buffer("alpha_normalized", torch.ones(self.num_tasks, dtype=torch.float64))
        self._warned = False

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        options = self.options
        if inputs.step % options.update_weights_every == 0:
            self._solve(inputs.gramian, inputs.step)
        alpha = self.alpha.detach().cpu()
        weights = clip_to_norm(alpha, inputs.gramian, options.max_norm)
        return Aggregation(weights=weights, head_weights=alpha if self.head_gradients == "weighted" else None)

    def _solve(self, gramian: Tensor, step: int) -> None:
        """Update α and α̂ from this step's Gramian, or keep them (with a warning, once) when there is no solution."""
        if not float(gramian.diagonal().abs().max()) > 0:
            return  # all gradients zero: d = 0 whatever α is
        if self.num_tasks == 2:
            exact = nash_two_tasks(gramian)
            solution = NashSolution(None, None, math.inf) if exact is None else NashSolution(*exact, 0.0)
        else:
            solution = nash_mtl_solve(gramian, self.alpha_normalized, self.options.optim_niter)
        if solution.alpha is not None and solution.alpha_hat is not None:
            self.alpha.copy_(solution.alpha)
            self.alpha_normalized.copy_(solution.alpha_hat)
            return
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"Nash-MTL: no solution of α_i (Gα)_i = 1 at step {step} (scale-free residual {solution.residual:.2g}; "
                "e.g. a task with a zero gradient, or Pareto-stationary gradients); reusing the previous weights "
                "(warned once per balancer)",
                RuntimeWarning,
                stacklevel=2,
            )
