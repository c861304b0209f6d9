"""FairGrad's solver of ``(G w)_i = w_i^{−1/α}`` when the task gradient norms differ by up to six decades.

Residual used throughout: ``max_i |(G w)_i · w_i^{1/α} − 1|``, the equation's residual relative to its right-hand
side ``w_i^{−1/α}`` (scale-free: it does not change when G is multiplied by a constant).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares
from torch import Tensor

from taskbalance.balancers import create
from taskbalance.balancers.fairgrad import fair_allocation


def relative_residual(gramian: Tensor, weights: Tensor, alpha: float) -> float:
    return float(((gramian @ weights) * weights ** (1.0 / alpha) - 1.0).abs().max())


def jacobian_with_norms(norms: list[float], dim: int, seed: int) -> Tensor:
    """Rows in random directions (seeded) with the given norms."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(len(norms), dim, generator=generator, dtype=torch.float64)
    return rows / rows.norm(dim=1, keepdim=True) * torch.tensor(norms, dtype=torch.float64).unsqueeze(1)


def random_imbalanced_jacobian(seed: int, span: float) -> Tensor:
    """2 to 6 tasks in 2 to 3K+1 dimensions, log-uniform norms over ``span`` (the extremes always present)."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    exponents = np.concatenate([[0.0, 1.0], rng.uniform(0.0, 1.0, k - 2)])
    norms = 1e-3 * span ** rng.permutation(exponents)
    return jacobian_with_norms(norms.tolist(), int(rng.integers(k, 3 * k + 2)), seed)


def solve_without_fallback(gramian: Tensor, alpha: float) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the visible fallback would fail the test
        return fair_allocation(gramian, alpha)


def test_orthogonal_example_of_the_issue_hand_computed() -> None:
    # orthogonal rows: w_i ‖g_i‖² = w_i^{−1/α} ⇒ w_i = ‖g_i‖^{−2α/(α+1)}; norms (1e-3, 0.3, 1e2), α = 2 → w_0 = 1e4
    norms = torch.tensor([1e-3, 0.3, 1e2], dtype=torch.float64)
    weights = solve_without_fallback(torch.diag(norms**2), 2.0)
    assert torch.allclose(weights, norms ** (-4 / 3), rtol=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_example_of_the_issue_converges(seed: int) -> None:
    # the issue's norms (1e-3, 0.3, 1e2), α = 2, in random directions; its w_0 ≈ 1.73e4 was one such draw
    jacobian = jacobian_with_norms([1e-3, 0.3, 1e2], dim=8, seed=seed)
    gramian = jacobian @ jacobian.T
    weights = solve_without_fallback(gramian, 2.0)
    assert relative_residual(gramian, weights, 2.0) <= 1e-8


@pytest.mark.parametrize("alpha", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("span", [1e2, 1e4, 1e6])
def test_random_imbalanced_problems_converge(alpha: float, span: float) -> None:
    for seed in range(40):
        jacobian = random_imbalanced_jacobian(seed, span)
        gramian = jacobian @ jacobian.T
        weights = solve_without_fallback(gramian, alpha)
        assert relative_residual(gramian, weights, alpha) <= 1e-8, f"seed {seed}"


@pytest.mark.parametrize("span", [1e2, 1e4, 1e6])
def test_alpha_below_one_converges_to_the_rounding_of_gw(span: float) -> None:
    # α < 1: (G w)_i is a strongly cancelling sum on imbalanced norms, so its rounding, K·eps·Σ_j |G_ij w_j|
    # relative to w_i^{−1/α}, bounds the reachable residual
    alpha = 0.5
    for seed in range(40):
        jacobian = random_imbalanced_jacobian(seed, span)
        gramian = jacobian @ jacobian.T
        weights = solve_without_fallback(gramian, alpha)
        residual = ((gramian @ weights) * weights ** (1.0 / alpha) - 1.0).abs()
        rounding = len(weights) * torch.finfo(torch.float64).eps * (gramian.abs() @ weights) * weights ** (1 / alpha)
        assert bool((residual <= 1e-10 + rounding).all()) and float(residual.max()) <= 1e-6, f"seed {seed}"


@pytest.mark.parametrize("alpha", [1.0, 2.0])
@pytest.mark.parametrize("seed", range(10))
def test_direction_matches_the_official_rule_when_it_converges(alpha: float, seed: int) -> None:
    # norms within one decade around 1: there the official call (start 1/K, scipy's defaults) converges
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    jacobian = jacobian_with_norms((10 ** rng.uniform(-0.5, 0.5, k)).tolist(), int(rng.integers(k, 3 * k + 2)), seed)
    gramian = jacobian @ jacobian.T
    a = gramian.numpy()

    def residual(x: np.ndarray) -> np.ndarray:
        return a @ x - (1 / x) ** (1 / alpha)

    official = least_squares(residual, np.ones(k) / k, bounds=(0, np.inf))
    assert official.success and relative_residual(gramian, torch.from_numpy(official.x), alpha) <= 1e-7
    good_start = np.diag(a) ** (-alpha / (alpha + 1))
    tight = least_squares(residual, good_start, bounds=(0, np.inf), ftol=1e-15, xtol=1e-15, gtol=1e-15)
    ours = jacobian.T @ solve_without_fallback(gramian, alpha)
    for reference, tolerance in ((tight.x, 1e-9), (official.x, 1e-6)):
        d = jacobian.T @ torch.from_numpy(reference)
        assert float((ours - d).norm()) <= tolerance * float(d.norm())


def test_balancer_solves_imbalanced_problems() -> None:
    jacobian = jacobian_with_norms([1e-3, 0.3, 1e2], dim=8, seed=0)
    balancer = create("fairgrad", tasks=["a", "b", "c"], alpha=2.0, max_norm=0.0)
    _, weights = balancer.combine(jacobian, None)
    assert relative_residual(jacobian @ jacobian.T, weights.double() / 3, 2.0) <= 1e-8


def test_no_positive_solution_falls_back_visibly() -> None:
    # exactly opposite gradients: (G w)_1 = w_1 − w_2 and (G w)_2 = w_2 − w_1 cannot both be positive
    gramian = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="no positive solution"):
        weights = fair_allocation(gramian, 2.0)
    assert bool(torch.isfinite(weights).all()) and bool((weights > 0).all())
