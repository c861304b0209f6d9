"""Nash-MTL: Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task Learning as a Bargaining
Game", ICML 2022, arXiv 2202.01017. Official code: ``AvivNavon/nash-mtl`` (``methods/weight_methods.py::NashMTL``).

Rule: the Nash bargaining solution ``Δθ = argmax_{‖Δθ‖ ≤ ε} Σ_i log(g_iᵀ Δθ)`` is ``Δθ = Σ_i α_i g_i`` with
``α > 0`` solving ``(G α)_i = 1 / α_i`` for every task (``α_i g_iᵀ d = 1``). Orthogonal gradients give
``α_i = 1/‖g_i‖``; scaling one task's loss by ``s`` divides its ``α_i`` by ``s`` and leaves ``d`` unchanged; at the
solution ``‖d‖² = K``.

Solver (paper §3.2, official code): the concave-convex procedure. With ``β(α) = G α`` and
``φ(α) = Σ_i log α_i + log β_i(α)``, each iteration solves the convex problem
``min_{α ≥ 0} Σ_i β_i(α) + ∇φ(α_τ)ᵀ α`` s.t. ``log α_i + log β_i(α) ≥ 0`` (the linearisation of φ at the previous
iterate ``α_τ``), for at most ``optim_niter`` = 20 iterations, stopping when ``‖Ĝ α_τ − 1/(α_τ + 1e-10)‖ < 1e-3``
(``Ĝ``: the normalised Gramian below) or ``‖α_{τ+1} − α_τ‖ < 1e-6`` (official tests, as in the official loop). The problem is compiled once with
cvxpy Parameters (DPP) and re-solved; the official solver ECOS is not available here, so CLARABEL solves it, without
cvxpy's solver-level warm start (that hidden state would make a resumed run differ from an uninterrupted one; the
CCP's own warm start is the α̂ buffer).

Two tasks (exact): for K = 2 the equations ``a α1² + b α1 α2 = 1``, ``b α1 α2 + c α2² = 1`` (``G = [[a, b], [b, c]]``)
give ``a α1² = c α2²`` and hence ``α_i = 1 / (‖g_i‖ √(1 + ρ))`` with ``ρ = b / √(ac)`` the cosine between the two
gradients. This closed form is used whenever K = 2 (no cvxpy, microseconds per step); it is the fixed point that the
CCP approaches, and the CCP run to a tight tolerance agrees with it to 1e-6 (tested). With the official tolerance
(residual < 1e-3) the CCP stops up to about 1e-3 short of it; ``optim_niter`` does not apply to K = 2. No solution
exists when a gradient is zero or the two are exactly opposite (ρ = -1): then the previous α is reused, as when the
CCP fails.

Deviation (scaling): the official code divides the Gramian by its Frobenius norm ``nf`` in the objective and
stopping test but keeps the constraint on the unnormalised Gramian, so its iterations mix two scales (TorchJD warns
that the official implementation "has some flaws"). Here the whole problem is solved on ``Ĝ = G / nf``, and the
solution ``α̂`` (``Ĝ α̂ = 1/α̂``) is mapped back with ``α = α̂ / √nf``, which solves ``G α = 1/α`` exactly: the fixed
point is the same, the numbers stay well scaled. The warm start is the previous step's ``α̂`` (scale-free); the
first step starts from ones, like the official code.

Defaults (official): ``optim_niter=20``, ``update_weights_every=1`` (α is recomputed every that many steps and
reused in between), ``max_norm=1.0``. The official code back-propagates ``Σ α_i L_i`` (heads weighted by the
unclipped α) and then clips the shared gradient with ``clip_grad_norm_(shared, 1.0)``; since the engine writes
``d = Jᵀw`` itself, the clipping is a rescaling of the shared weights so that ``‖Jᵀ w‖ ≤ max_norm`` (as TorchJD
does; ``max_norm=0`` disables it), while the heads keep the unclipped α (``default_head_gradients="weighted"``).
With the default the shared update always has norm 1 at K ≥ 2 (``‖d‖ = √K`` before clipping). With
``source="features"`` the clipping applies to the norm on the features. No ×K: α is not a convex combination.

State: the previous α (weights reused on failure and between updates) and α̂ (warm start), as buffers in
``state_dict()``. Failure handling (official): when a sub-problem cannot be solved (infeasible, e.g. a task with a
zero gradient leaves no feasible point; a warm start with ``(G α_τ)_i < 0`` gives a negative linearisation
coefficient and an unbounded problem; solver error), the last successful iterate is kept; when that happens at the
first iteration the step reuses the previous step's α (ones at the first step), which the IMGrad paper calls
"skipping". An all-zero Gramian also reuses the previous α (``d = 0`` anyway). Deterministic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer
from taskbalance.balancers.solvers import clip_to_norm

_SOLVED = ("optimal", "optimal_inaccurate")


class NashMTLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    optim_niter: int = Field(20, ge=1, description="maximum concave-convex iterations per solve (official 20)")
    update_weights_every: int = Field(1, ge=1, description="recompute α every this many steps, reuse it in between")
    max_norm: float = Field(1.0, ge=0, description="clip ‖Jᵀw‖ of the shared update to this norm (0: no clipping)")


class NashSubproblem:
    """One CCP sub-problem for K tasks, compiled once with cvxpy Parameters and re-solved with new values."""

    def __init__(self, num_tasks: int) -> None:
        import cvxpy as cp  # imported here: cvxpy takes seconds to import and only Nash-MTL needs it

        self._cp = cp
        self.alpha = cp.Variable(num_tasks, nonneg=True)
        self.gramian = cp.Parameter((num_tasks, num_tasks))
        self.linearization = cp.Parameter(num_tasks)
        beta = self.gramian @ self.alpha
        objective = cp.Minimize(cp.sum(beta) + self.linearization @ self.alpha)
        self.problem = cp.Problem(objective, [-cp.log(self.alpha) - cp.log(beta) <= 0])

    def solve(self, gramian: np.ndarray, anchor: np.ndarray) -> np.ndarray | None:
        """The minimiser around ``anchor`` (the previous iterate), or None when the solver finds none."""
        with np.errstate(divide="ignore", invalid="ignore"):
            linearization = 1.0 / anchor + gramian @ (1.0 / (gramian @ anchor))
        if not np.all(np.isfinite(linearization)):
            return None
        self.gramian.value = gramian
        self.linearization.value = linearization
        cp = self._cp
        try:
            self.problem.solve(solver=cp.CLARABEL, warm_start=False)
        except (cp.error.SolverError, ValueError, ArithmeticError):
            return None
        value = self.alpha.value
        if self.problem.status not in _SOLVED or value is None or not np.all(np.isfinite(value)):
            return None
        return np.asarray(value, dtype=np.float64)


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


def nash_mtl_solve(
    gramian: Tensor,
    start: Tensor | None = None,
    optim_niter: int = 20,
    subproblem: NashSubproblem | None = None,
    tolerance: float = 1e-3,
) -> tuple[Tensor, Tensor] | None:
    """Solve ``(G α)_i = 1/α_i`` by the CCP; ``(α, α̂)`` with ``α̂`` the solution for ``G / ‖G‖_F``.

    ``start`` is a warm start for ``α̂`` (default ones). The iterations stop when ``‖Ĝ α̂ − 1/α̂‖ < tolerance``
    (official 1e-3) or when an iterate moves less than ``tolerance / 1000`` (official 1e-6). Returns None when no
    iteration succeeded (the caller then reuses its previous weights) or when the Gramian is zero.
    """
    k = gramian.shape[0]
    scale = float(torch.linalg.matrix_norm(gramian))
    if not scale > 0:
        return None
    normalized = (gramian / scale).numpy()
    subproblem = subproblem or NashSubproblem(k)
    anchor = np.ones(k) if start is None else start.detach().double().cpu().numpy()
    solved = False
    for _ in range(optim_niter):
        candidate = subproblem.solve(normalized, anchor)
        if candidate is None:
            break
        solved = True
        residual = np.linalg.norm(normalized @ anchor - 1.0 / (anchor + 1e-10))
        if residual < tolerance or np.linalg.norm(candidate - anchor) < tolerance / 1000:
            break
        anchor = candidate
    if not solved:
        return None
    alpha_hat = torch.from_numpy(anchor.copy())
    return alpha_hat / math.sqrt(scale), alpha_hat


@register_balancer
class NashMTL(Balancer):
    """Nash bargaining between tasks: α_i g_iᵀd = 1 for every task."""

    name = "nashmtl"
    description = "Nash bargaining solution α_i (Gα)_i = 1, solved by the concave-convex procedure (cvxpy)."
    requires = "gramian"
    default_head_gradients = "weighted"
    Options = NashMTLOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("alpha", torch.ones(self.num_tasks, dtype=torch.float64))
        self.register_buffer("alpha_normalized", torch.ones(self.num_tasks, dtype=torch.float64))
        self._subproblem: NashSubproblem | None = None

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        options = self.options
        if inputs.step % options.update_weights_every == 0:
            solution = self._solve(inputs.gramian)
            if solution is not None:
                self.alpha.copy_(solution[0])
                self.alpha_normalized.copy_(solution[1])
        alpha = self.alpha.detach().cpu()
        weights = clip_to_norm(alpha, inputs.gramian, options.max_norm)
        return Aggregation(weights=weights, head_weights=alpha if self.head_gradients == "weighted" else None)

    def _solve(self, gramian: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.num_tasks == 2:
            return nash_two_tasks(gramian)
        if self._subproblem is None:
            self._subproblem = NashSubproblem(self.num_tasks)
        return nash_mtl_solve(gramian, self.alpha_normalized, self.options.optim_niter, self._subproblem)
