"""Numerical building blocks shared by the Gramian-based methods (no method logic here).

* :func:`project_to_simplex`: Euclidean projection onto the probability simplex (sort-based, as in the official
  MGDA ``MinNormSolver._projection2simplex``).
* :func:`min_norm_point`: the minimum-norm point of the convex hull of the task gradients,
  ``argmin_{α ∈ Δ} αᵀ G α``, with the official MGDA solver (Sener & Koltun, NeurIPS 2018, arXiv 1810.04650,
  ``isl-org/MultiObjectiveOptimization/multi_task/min_norm_solvers.py``): the best pair in closed form as the
  starting point, then projected gradient steps with an exact line search. Used by MGDA and IMGrad.
* :func:`minimize_on_simplex`: ``scipy.optimize.minimize`` with SLSQP from the uniform point, bounds ``[0, 1]`` and
  ``Σ x = 1``, the solver call of the official CAGrad and IMGrad code.
* :func:`fairness_newton`: ``w > 0`` with ``(G w)_i = w_i^{−1/α}`` by damped Newton on a convex potential (FairGrad;
  α = 1 is Nash-MTL's bargaining equation).
* :func:`clip_to_norm`: the Nash-MTL/FairGrad ``clip_grad_norm_(shared, max_norm)`` as a rescaling of the weights.
* :func:`psd_factor`: a factor ``F`` of the nearest positive semi-definite matrix, ``G ≈ F Fᵀ``, so that quadratic
  forms ``‖Fᵀx‖²`` of a rounded (slightly indefinite) Gramian stay non-negative.
* :func:`trace_normalized`: ``G / tr(G)`` (the solutions of the scale-free problems do not depend on ``tr(G)``,
  and solving them on a unit-trace Gramian keeps the official absolute epsilons negligible).
* :func:`conflict_averse_weights`: CAGrad's dual problem and weights, with IMGrad's reweighting of its two terms
  (the rule and its safeguards are explained in :mod:`taskbalance.balancers.cagrad`).

Imports nothing from the package: method modules share these instead of importing each other.

Everything takes and returns float64 CPU tensors (or numpy arrays for the scipy callbacks); K is small.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

#: Absolute trace below which a Gramian counts as all-zero (every task gradient vanishes).
ZERO_TRACE: float = 1e-30


def trace_normalized(gramian: Tensor) -> tuple[Tensor, float]:
    """``(G / tr(G), tr(G))``; a Gramian whose trace is not above :data:`ZERO_TRACE` comes back as zeros."""
    trace = float(gramian.diagonal().sum())
    if not trace > ZERO_TRACE:
        return torch.zeros_like(gramian), 0.0
    return gramian / trace, trace


def psd_factor(gramian: np.ndarray) -> np.ndarray:
    """``F`` (K×K) with ``F Fᵀ`` the nearest positive semi-definite matrix to the symmetric ``gramian``.

    The float64 Gramian of a float32 J can be slightly indefinite (rounding); a quadratic form written as ``‖Fᵀx‖²``
    is never negative, so its square root is never NaN. ``F = V √max(Λ, 0)`` from the eigendecomposition.
    """
    eigenvalues, vectors = np.linalg.eigh(0.5 * (gramian + gramian.T))
    return vectors * np.sqrt(np.maximum(eigenvalues, 0.0))


def _project_to_simplex(y: np.ndarray) -> np.ndarray:
    ordered = np.sort(y)[::-1]
    cumulative = np.cumsum(ordered)
    thresholds = (cumulative - 1.0) / np.arange(1, y.size + 1)
    # the first i with threshold_i > ordered_{i+1} fixes the shift; otherwise all entries stay active
    above = np.nonzero(thresholds[:-1] > ordered[1:])[0]
    shift = thresholds[above[0]] if above.size else thresholds[-1]
    return np.maximum(y - shift, 0.0)


def project_to_simplex(y: Tensor) -> Tensor:
    """Euclidean projection of a vector onto ``{x : x ≥ 0, Σ x = 1}``."""
    if y.dim() != 1 or y.numel() == 0:
        raise ValueError(f"project_to_simplex takes a non-empty vector, got shape {tuple(y.shape)}")
    return torch.from_numpy(_project_to_simplex(y.detach().double().cpu().numpy().copy()))


def _min_norm_pair(v1v1: float, v1v2: float, v2v2: float) -> tuple[float, float]:
    """``argmin_γ ‖γ v1 + (1 − γ) v2‖²`` over [0, 1] and its value, with the official 0.999 / 0.001 clipping."""
    if v1v2 >= v1v1:
        return 0.999, v1v1
    if v1v2 >= v2v2:
        return 0.001, v2v2
    # both differences are positive here, so the denominator ‖v1 − v2‖² is too
    gamma = (v2v2 - v1v2) / (v1v1 + v2v2 - 2.0 * v1v2)
    return gamma, v2v2 + gamma * (v1v2 - v2v2)


def _next_point(current: np.ndarray, descent: np.ndarray) -> np.ndarray:
    """The official ``_next_point``: a step along the centred descent direction, to the first face it meets."""
    direction = descent - descent.mean()
    negative, positive = direction < 0, direction > 0
    to_zero = -current[negative] / direction[negative]
    to_one = (1.0 - current[positive]) / direction[positive]
    to_zero, to_one = to_zero[to_zero > 1e-7], to_one[to_one > 1e-7]
    # as in the official code, the step defaults to 1 only when no coordinate is heading to zero
    step = float(to_zero.min()) if to_zero.size else 1.0
    if to_one.size:
        step = min(step, float(to_one.min()))
    return _project_to_simplex(current + step * direction)


def min_norm_point(gramian: Tensor, tol: float = 1e-5, max_iter: int = 250) -> Tensor:
    """``α ∈ Δ`` minimising ``αᵀ G α`` (the weights of the min-norm element of the gradients' convex hull).

    The official MGDA solver: for K = 2 the closed form (exact up to the official clipping of the weights to
    [0.001, 0.999]); for K ≥ 3 the best pair starts projected gradient descent with exact line search, which stops
    when an update changes α by less than ``tol`` in L1 norm. The official loop never increments its iteration
    counter (so it can only stop on ``tol``); here at most ``max_iter`` iterations run.
    """
    if gramian.dim() != 2 or gramian.shape[0] != gramian.shape[1] or gramian.shape[0] == 0:
        raise ValueError(f"min_norm_point takes a non-empty square Gramian, got shape {tuple(gramian.shape)}")
    g = gramian.detach().double().cpu().numpy()
    k = g.shape[0]
    if k == 1:
        return torch.ones(1, dtype=torch.float64)
    best_cost, alpha = np.inf, np.zeros(k)
    for i in range(k):
        for j in range(i + 1, k):
            gamma, cost = _min_norm_pair(g[i, i], g[i, j], g[j, j])
            if cost < best_cost:
                best_cost = cost
                alpha = np.zeros(k)
                alpha[i], alpha[j] = gamma, 1.0 - gamma
    for _ in range(max_iter if k > 2 else 0):
        candidate = _next_point(alpha, -g @ alpha)
        gamma, _ = _min_norm_pair(alpha @ g @ alpha, alpha @ g @ candidate, candidate @ g @ candidate)
        updated = gamma * alpha + (1.0 - gamma) * candidate
        if np.abs(updated - alpha).sum() < tol:
            break
        alpha = updated
    return torch.from_numpy(alpha)


def minimize_on_simplex(
    objective: Callable[[np.ndarray], float],
    gradient: Callable[[np.ndarray], np.ndarray],
    num_tasks: int,
    ftol: float = 1e-12,
    max_iter: int = 500,
) -> np.ndarray:
    """SLSQP from ``1/K`` with bounds ``[0, 1]^K`` and ``Σ x = 1`` (the official CAGrad/IMGrad solver call).

    The official code leaves SLSQP at its defaults (``ftol`` 1e-6, numerical gradients); passing the analytic
    gradient and a tighter ``ftol`` only makes the same problem's solution more accurate. The result is projected
    back onto the simplex to remove SLSQP's feasibility tolerance.
    """
    start = np.full(num_tasks, 1.0 / num_tasks)
    result = minimize(
        objective,
        start,
        jac=gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * num_tasks,
        constraints=({"type": "eq", "fun": lambda x: 1.0 - x.sum(), "jac": lambda x: -np.ones_like(x)},),
        options={"ftol": ftol, "maxiter": max_iter},
    )
    x = np.asarray(result.x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        return start
    return _project_to_simplex(x)


#: Relative residual ``max_i |(G w)_i · w_i^{1/α} − 1|`` at which the Newton iteration stops.
TOLERANCE = 1e-10
#: Largest relative residual accepted when it is within the rounding of ``(G w)_i`` (strong cancellation).
ROUNDING_LIMIT = 1e-6
#: Newton steps before the equation counts as having no positive solution.
MAX_STEPS = 100
#: Step halvings before a line search gives up.
MAX_HALVINGS = 60
#: Sufficient-decrease constant of the Armijo test.
ARMIJO = 1e-4
#: Largest fraction of the distance to ``w = 0`` that one step covers.
TO_BOUNDARY = 0.9


def relative_residual(gramian: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """``|(G w)_i · w_i^{1/α} − 1|`` per task: the residual of ``(G w)_i = w_i^{−1/α}`` relative to its right side."""
    return np.abs(gramian @ w * w ** (1.0 / alpha) - 1.0)


def _converged(gramian: np.ndarray, w: np.ndarray, alpha: float) -> bool:
    rounding = w.size * np.finfo(float).eps * (np.abs(gramian) @ w) * w ** (1.0 / alpha)
    residual = relative_residual(gramian, w, alpha)
    return bool(np.all(residual <= TOLERANCE + rounding) and residual.max() <= ROUNDING_LIMIT)


def _potential_change(gramian: np.ndarray, w: np.ndarray, step: np.ndarray, alpha: float) -> float:
    """``f(w + step) − f(w)``, summed from per-task differences so that it does not cancel against ``f`` itself."""
    log_ratio = np.log1p(step / w)
    if alpha == 1.0:
        barrier = float(log_ratio.sum())
    else:
        p = (alpha - 1.0) / alpha
        barrier = float((w**p * np.expm1(p * log_ratio)).sum() / p)
    return float(step @ (gramian @ w + 0.5 * (gramian @ step))) - barrier


def _newton_step(gramian: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray | None:
    """One damped Newton step on the potential from ``w``; None when the line search finds no acceptable step."""
    q = w ** (1.0 - 1.0 / alpha)
    gradient = w * (gramian @ w) - q  # ∇f in the coordinates v = w' / w, at v = 1
    hessian = w[:, None] * gramian * w[None, :] + np.diag(q / alpha)
    scale = 1.0 / np.sqrt(hessian.diagonal())
    try:
        relative = -scale * np.linalg.solve(scale[:, None] * hessian * scale[None, :], scale * gradient)
    except np.linalg.LinAlgError:  # singular to working precision: w has run off along a null direction of G
        return None
    slope = float(gradient @ relative)
    t = min(1.0, TO_BOUNDARY / float(-relative.min())) if relative.min() < 0 else 1.0
    residual = float(relative_residual(gramian, w, alpha).max())
    for _ in range(MAX_HALVINGS):
        step = t * w * relative
        trial = w + step
        if _potential_change(gramian, w, step, alpha) <= ARMIJO * t * slope:
            return trial
        if float(relative_residual(gramian, trial, alpha).max()) <= 0.5 * residual:
            return trial
        t *= 0.5
    return None

def fairness_newton(
    gramian: np.ndarray, alpha: float, start: np.ndarray | None = None, max_steps: int = MAX_STEPS
) -> tuple[np.ndarray, bool]:
    """Damped Newton on the potential ``f(w) = ½ wᵀGw − Σ_i φ(w_i)`` for ``(G w)_i = w_i^{−1/α}``: ``(w, converged)``.

    ``φ(w) = log w`` for α = 1 (Nash-MTL's bargaining equation), ``α/(α−1) · w^{(α−1)/α}`` otherwise (FairGrad): f is
    strictly convex on ``w > 0``, so its stationary point is the unique solution, which exists unless a non-negative,
    non-zero combination of the gradients vanishes. Steps are taken in relative coordinates ``w' / w`` (log space to
    first order: scale-equivariant, so G needs no normalisation), with the Newton system equilibrated; a step goes
    at most 90% of the way to ``w = 0`` and is halved until f decreases (Armijo, f's change summed from per-task
    differences) or the residual halves. ``start`` defaults to the root for orthogonal gradients,
    ``w_i = G_ii^{−α/(α+1)}``. Converged: the relative residual ``max_i |(G w)_i · w_i^{1/α} − 1|`` is ≤ 1e-10, or
    within the rounding of ``(G w)_i`` and ≤ 1e-6. Otherwise the last iterate comes back with ``False``.
    """
    w = gramian.diagonal() ** (-alpha / (alpha + 1.0)) if start is None else np.asarray(start, dtype=np.float64)
    for _ in range(max_steps):
        if _converged(gramian, w, alpha):
            return w, True
        trial = _newton_step(gramian, w, alpha)
        if trial is None or not np.all(np.isfinite(trial)):
            break
        w = trial
    return w, _converged(gramian, w, alpha)


def clip_to_norm(weights: Tensor, gramian: Tensor, max_norm: float) -> Tensor:
    """Rescale ``w`` so that ``‖Jᵀw‖ = √(wᵀGw) ≤ max_norm`` (``max_norm = 0`` disables the clipping).

    This is ``torch.nn.utils.clip_grad_norm_(shared, max_norm)`` of the Nash-MTL and FairGrad code, applied to the
    weights because the engine writes ``d = Jᵀw`` itself (TorchJD's ``NashMTL`` does the same).
    """
    if max_norm <= 0:
        return weights
    norm = float((weights @ gramian @ weights).clamp_min(0).sqrt())
    return weights * (max_norm / norm) if norm > max_norm else weights


# ----------------------------------------------------------------------------------------------- CAGrad, IMGrad
#: The official CAGrad ``rescale`` option: divide the update by 1 (0), ``1 + c²`` (1) or ``1 + c`` (2).
Rescale = Literal[0, 1, 2]
#: Safeguard added under square roots and to denominators (the official code's 1e-8 on the raw Gramian), relative
#: to the unit-trace Gramian.
EPS = 1e-12
#: ``‖g_w*‖`` (on the unit-trace Gramian) below which the gradients count as Pareto-stationary (the objective's
#: resolution, ``√ε``)...
PARETO_STATIONARY = 1e-6
#: ... or below this fraction of ``Σ_i w*_i ‖g_i‖`` (a cancellation beyond the rounding of a float32 Gramian).
CANCELLATION = 1e-3


def rescale_factor(c: float, rescale: Rescale) -> float:
    """The official ``rescale`` divisor: 1, ``1 + c²`` or ``1 + c``."""
    return (1.0, 1.0 + c * c, 1.0 + c)[rescale]


def conflict_averse_weights(
    gramian: Tensor, c: float, rescale: Rescale, linear_coef: float = 1.0, norm_coef: float = 1.0
) -> Tensor:
    """``K (b + λ w*) / rescale`` where ``w*`` minimises ``linear_coef·xᵀAb + norm_coef·√φ·√(xᵀAx)`` on the simplex.

    ``linear_coef = norm_coef = 1`` is CAGrad; IMGrad reweights the two terms by its adaptive factor and keeps the
    rest (the same ``λ = √φ/‖g_w‖``, rescale and ×K).
    """
    k = gramian.shape[0]
    normalized, trace = trace_normalized(gramian)
    divisor = rescale_factor(c, rescale)
    if trace == 0.0:
        return torch.ones(k, dtype=torch.float64) / divisor
    factor = psd_factor(normalized.numpy())
    a = factor @ factor.T
    b = np.full(k, 1.0 / k)
    pull = a @ b
    sqrt_phi = c * float(np.linalg.norm(factor.T @ b)) + EPS

    def norm(x: np.ndarray) -> float:  # ‖g_x‖ = ‖Fᵀx‖: never the square root of a negative rounding error
        return float(np.sqrt((factor.T @ x) @ (factor.T @ x) + EPS))

    def objective(x: np.ndarray) -> float:
        return float(linear_coef * (x @ pull) + norm_coef * sqrt_phi * norm(x))

    def gradient(x: np.ndarray) -> np.ndarray:
        return linear_coef * pull + norm_coef * sqrt_phi * (a @ x) / norm(x)

    w = minimize_on_simplex(objective, gradient, k)
    gw_norm = float(np.linalg.norm(factor.T @ w))
    # ‖g_w*‖ ≈ 0 (Pareto-stationary up to the objective's or float32's resolution): λ g_w* vanishes, and λ w* would
    # only carry huge weights whose float32 combination is rounding noise
    stationary = gw_norm <= max(PARETO_STATIONARY, CANCELLATION * float(w @ np.sqrt(np.maximum(a.diagonal(), 0.0))))
    lam = 0.0 if stationary else sqrt_phi / (gw_norm + EPS)
    return torch.from_numpy(k * (b + lam * w) / divisor)
