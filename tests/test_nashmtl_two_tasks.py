"""Nash-MTL's exact two-task solution: the bargaining equations by hand, against the general Newton solver on the
same Gramians (well and ill conditioned), and the balancer's use of it."""

from __future__ import annotations

import math

import pytest
import torch

from taskbalance.balancers import create
from taskbalance.balancers.nashmtl import nash_mtl_solve, nash_two_tasks


def two_task_gramians() -> list[torch.Tensor]:
    """Random 2-task Gramians with gradient norms over six decades, plus ill-conditioned ones."""
    generator = torch.Generator().manual_seed(0)
    jacobians = []
    for _ in range(6):
        jacobian = torch.randn(2, 5, generator=generator, dtype=torch.float64)
        jacobian[1] *= 10 ** float(torch.empty(1).uniform_(-3, 3, generator=generator))
        jacobians.append(jacobian)
    base, noise = torch.randn(2, 5, generator=generator, dtype=torch.float64)
    jacobians.append(torch.stack([base, 1e3 * (base + 1e-6 * noise)]))  # nearly parallel, norms 1e3 apart: cond ~1e18
    jacobians.append(torch.stack([base, -0.01 * (base + 0.1 * noise)]))  # nearly opposite, cos ≈ -0.96
    jacobians.append(torch.stack([base, -(base + 0.01 * noise)]))  # cos ≈ -0.9996
    return [j @ j.T for j in jacobians]


def test_hand_computed_solution() -> None:
    # G = [[1, 1], [1, 4]]: cos = 1/2, α = (1/√1.5, 1/(2√1.5)); check α_i (Gα)_i = 1 by hand
    gramian = torch.tensor([[1.0, 1.0], [1.0, 4.0]], dtype=torch.float64)
    alpha, alpha_hat = nash_two_tasks(gramian)
    expected = torch.tensor([1 / math.sqrt(1.5), 1 / (2 * math.sqrt(1.5))], dtype=torch.float64)
    torch.testing.assert_close(alpha, expected, rtol=1e-15, atol=0)
    assert pytest.approx(1.0) == 1 / 1.5 + 1 / (2 * 1.5)
    torch.testing.assert_close(alpha_hat, alpha * math.sqrt(float(torch.linalg.matrix_norm(gramian))))


@pytest.mark.parametrize("index", range(9))
def test_equals_the_general_solver_and_solves_the_equation(index: int) -> None:
    gramian = two_task_gramians()[index]
    alpha, alpha_hat = nash_two_tasks(gramian)
    # the defining equation (G α)_i = 1/α_i, and the same for the normalised Gramian and α̂
    torch.testing.assert_close(alpha * (gramian @ alpha), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-10)
    normalized = gramian / torch.linalg.matrix_norm(gramian)
    torch.testing.assert_close(
        alpha_hat * (normalized @ alpha_hat), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-10
    )
    general = nash_mtl_solve(gramian, optim_niter=200)
    assert general.alpha is not None and general.alpha_hat is not None
    torch.testing.assert_close(general.alpha, alpha, rtol=1e-6, atol=0)
    torch.testing.assert_close(general.alpha_hat, alpha_hat, rtol=1e-6, atol=0)


def test_no_solution_for_a_zero_or_an_opposite_gradient() -> None:
    g = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    assert nash_two_tasks(g @ g.T) is None
    opposite = torch.tensor([[1.0, 2.0], [-3.0, -6.0]], dtype=torch.float64)
    assert nash_two_tasks(opposite @ opposite.T) is None
    assert nash_two_tasks(torch.zeros(2, 2, dtype=torch.float64)) is None


def test_balancer_uses_the_exact_solution_and_reuses_weights_without_one() -> None:
    jacobian = torch.tensor([[2.0, 1.0, 0.0], [-1.0, 0.5, 3.0]], dtype=torch.float64)
    balancer = create("nashmtl", tasks=("a", "b"), max_norm=0.0)
    direction, weights = balancer.combine(jacobian)
    alpha, alpha_hat = nash_two_tasks(jacobian @ jacobian.T)
    torch.testing.assert_close(weights, alpha, rtol=0, atol=0)
    torch.testing.assert_close(balancer.state_dict()["alpha_normalized"], alpha_hat, rtol=0, atol=0)
    # α_i g_iᵀ d = 1 for both tasks, and ‖d‖² = K = 2
    torch.testing.assert_close(weights * (jacobian @ direction), torch.ones(2, dtype=torch.float64))
    assert float(direction.norm()) ** 2 == pytest.approx(2.0, rel=1e-12)
    opposite = torch.stack([jacobian[0], -2 * jacobian[0]])
    with pytest.warns(RuntimeWarning, match="no solution"):
        _, reused = balancer.combine(opposite)
    torch.testing.assert_close(reused, alpha, rtol=0, atol=0)
