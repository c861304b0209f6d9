"""Gramian-based gradient methods: hand-computed cases, defining equations, invariances, reference
implementations (written here from the papers, on the raw Jacobian rather than the Gramian), degenerate inputs,
and the path through ``backward()`` on a tiny model."""

from __future__ import annotations

import math
import warnings

import cvxpy as cp
import numpy as np
import pytest
import quadprog
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor, nn

from taskbalance.balancers import BalancerError, create, get
from taskbalance.balancers.aligned_mtl import balance_transformation
from taskbalance.balancers.imgrad import mean_mgda_cosine
from taskbalance.balancers.imtl import imtl_g_weights
from taskbalance.balancers.mgda import mgda_weights
from taskbalance.balancers.solvers import min_norm_point, project_to_simplex

METHODS = ("mgda", "mgda-ub", "cagrad", "imgrad", "nashmtl", "fairgrad", "upgrad", "imtl", "aligned_mtl")
TASKS = ("a", "b", "c", "d", "e")


def tasks(k: int) -> list[str]:
    return list(TASKS[:k])


def combine(name: str, jacobian: Tensor, losses: Tensor | None = None, **options: object) -> tuple[Tensor, Tensor]:
    """(d, w) of a fresh balancer on the rows of ``jacobian``."""
    balancer = create(name, tasks=tasks(jacobian.shape[0]), **options)
    d, w = balancer.combine(jacobian, losses)
    return d.double(), w


def random_jacobian(seed: int, k: int = 3, dim: int = 8, spread: bool = True) -> Tensor:
    """Generic K×dim Jacobian with conflicting rows and (when ``spread``) norms spread over two decades."""
    generator = torch.Generator().manual_seed(seed)
    jacobian = torch.randn(k, dim, generator=generator, dtype=torch.float64)
    if spread:
        jacobian *= torch.logspace(-1, 1, k, dtype=torch.float64)[torch.randperm(k, generator=generator)].unsqueeze(1)
    return jacobian


def cosine(x: Tensor, y: Tensor) -> float:
    return float(x @ y / (x.norm() * y.norm()))


def exact_min_norm(gramian: Tensor) -> np.ndarray:
    """Reference: the min-norm point of the convex hull as a QP (quadprog), independent of the MGDA solver."""
    k = gramian.shape[0]
    constraints = np.concatenate([np.ones((k, 1)), np.eye(k)], axis=1)
    bounds = np.concatenate([[1.0], np.zeros(k)])
    return quadprog.solve_qp(gramian.numpy() + 1e-12 * np.eye(k), np.zeros(k), constraints, bounds, 1)[0]


# --------------------------------------------------------------------------------------------- solvers
def test_project_to_simplex_hand_cases() -> None:
    cases = {
        (0.5, 0.5, 0.5): (1 / 3, 1 / 3, 1 / 3),
        (2.0, 0.0, -1.0): (1.0, 0.0, 0.0),
        (0.6, 0.6, -5.0): (0.5, 0.5, 0.0),  # shift 0.1 on the two active entries
    }
    for y, x in cases.items():
        assert torch.allclose(project_to_simplex(torch.tensor(y)), torch.tensor(x, dtype=torch.float64))
    on_simplex = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    assert torch.allclose(project_to_simplex(on_simplex), on_simplex)


def test_project_to_simplex_is_the_euclidean_projection() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = torch.randn(5, generator=generator, dtype=torch.float64) * 2
        x = project_to_simplex(y)
        assert abs(float(x.sum()) - 1) < 1e-12 and bool((x >= 0).all())
        # optimality: y − x is constant on the support and not larger off it
        gap = y - x
        support = x > 0
        assert float(gap[support].max() - gap[support].min()) < 1e-12
        assert bool((gap[~support] <= gap[support].max() + 1e-12).all())


def test_min_norm_point_matches_an_exact_qp() -> None:
    for seed in range(4):
        gramian = (j := random_jacobian(seed, k=4, dim=8)) @ j.T
        alpha = min_norm_point(gramian, tol=1e-12, max_iter=3000)
        reference = exact_min_norm(gramian)
        gap = float(alpha @ gramian @ alpha) - reference @ gramian.numpy() @ reference
        assert abs(gap) < 1e-9 * float(gramian.trace())


# --------------------------------------------------------------------------------------------- MGDA
def test_mgda_two_tasks_closed_form() -> None:
    # g1 = (1, 0), g2 = (0, 2): γ = (4 − 0) / (1 + 4 − 0) = 0.8
    _, w = combine("mgda", torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    assert torch.allclose(w, torch.tensor([0.8, 0.2], dtype=torch.float64))
    # g1·g2 = 2 ≥ ‖g1‖² = 1: the official clipping keeps 0.001 on the dominated task
    _, w = combine("mgda", torch.tensor([[1.0, 0.0], [2.0, 1.0]]))
    assert torch.allclose(w, torch.tensor([0.999, 0.001], dtype=torch.float64))


def test_mgda_normalizations_hand_computed() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # l2: unit orthogonal gradients → α = ½, applied to the raw gradients
    d, w = combine("mgda", jacobian, normalization="l2")
    assert torch.allclose(w, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(d, torch.tensor([0.5, 1.0], dtype=torch.float64))
    # loss: n = (1, 2) → the normalised gradients are unit vectors again
    _, w = combine("mgda", jacobian, torch.tensor([1.0, 2.0]), normalization="loss")
    assert torch.allclose(w, torch.tensor([0.5, 0.5], dtype=torch.float64))
    # loss+: n = (1·1, 0.5·2) = (1, 1) → the same Gramian as none
    _, w = combine("mgda", jacobian, torch.tensor([1.0, 0.5]), normalization="loss+")
    assert torch.allclose(w, torch.tensor([0.8, 0.2], dtype=torch.float64))
    # scale: ×K
    _, w = combine("mgda", jacobian, scale=True)
    assert torch.allclose(w, torch.tensor([1.6, 0.4], dtype=torch.float64))


def test_mgda_loss_normalization_needs_losses() -> None:
    balancer = create("mgda", tasks=tasks(2), normalization="loss")
    with pytest.raises(BalancerError, match="loss values"):
        balancer.combine(torch.eye(2))
    with pytest.raises(ValueError, match="needs the task losses"):
        mgda_weights(torch.eye(2), None, "loss")


@pytest.mark.parametrize("seed", range(6))
def test_mgda_kkt_conditions(seed: int) -> None:
    jacobian = random_jacobian(seed, k=3 + seed % 3, dim=10)
    gramian = jacobian @ jacobian.T
    _, alpha = combine("mgda", jacobian, tol=1e-13, max_iter=5000)
    assert abs(float(alpha.sum()) - 1) < 1e-9 and bool((alpha >= 0).all())
    value = float(alpha @ gramian @ alpha)
    slopes = gramian @ alpha
    scale = float(gramian.trace())
    assert bool((slopes >= value - 1e-6 * scale).all())
    active = alpha > 1e-4
    assert torch.allclose(slopes[active], torch.full_like(slopes[active], value), atol=1e-6 * scale)


def test_mgda_ub_is_mgda_on_features() -> None:
    assert get("mgda_ub").default_source == "features" and issubclass(get("mgda-ub"), get("mgda"))
    jacobian = random_jacobian(1)
    assert torch.equal(combine("mgda", jacobian)[1], combine("mgda-ub", jacobian)[1])


# --------------------------------------------------------------------------------------------- CAGrad
def cagrad_primal_value(jacobian: Tensor, c: float) -> float:
    """Reference: max_d min_i g_iᵀd s.t. ‖d − g_0‖ ≤ c‖g_0‖, solved in the primal on the raw Jacobian."""
    j = jacobian.numpy()
    g0 = j.mean(axis=0)
    d, t = cp.Variable(j.shape[1]), cp.Variable()
    problem = cp.Problem(cp.Maximize(t), [j @ d >= t, cp.norm(d - g0) <= c * np.linalg.norm(g0)])
    problem.solve(solver=cp.CLARABEL)
    return float(problem.value)


@pytest.mark.parametrize("rescale", [0, 1, 2])
def test_cagrad_c_zero_is_the_sum(rescale: int) -> None:
    jacobian = random_jacobian(0)
    d, w = combine("cagrad", jacobian, c=0.0, rescale=rescale)
    assert torch.allclose(w, torch.ones(3, dtype=torch.float64), atol=1e-7)


def test_cagrad_symmetric_two_tasks_hand_computed() -> None:
    # orthogonal unit gradients: w* = (½, ½) by symmetry, g_w = g_0, λ = c‖g_0‖/‖g_w‖ = c
    c = 0.4
    _, w = combine("cagrad", torch.eye(2), c=c)
    assert torch.allclose(w, torch.full((2,), (1 + c) / (1 + c * c), dtype=torch.float64), atol=1e-6)
    _, w = combine("cagrad", torch.eye(2), c=c, rescale=2)
    assert torch.allclose(w, torch.full((2,), (1 + c) / (1 + c), dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("c", [0.2, 0.4, 0.9])
def test_cagrad_solves_the_primal(seed: int, c: float) -> None:
    jacobian = random_jacobian(seed, k=3, dim=6)
    d, _ = combine("cagrad", jacobian, c=c, rescale=0)
    d = d / jacobian.shape[0]  # undo ×K: the primal's d
    g0 = jacobian.mean(dim=0)
    assert float((d - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-6)
    reference = cagrad_primal_value(jacobian, c)
    assert float((jacobian @ d).min()) == pytest.approx(reference, rel=1e-4, abs=1e-6 * float(g0.norm() ** 2))


def test_cagrad_large_c_approaches_mgda() -> None:
    jacobian = random_jacobian(3, k=3, dim=6)
    d, _ = combine("cagrad", jacobian, c=1e4)
    mgda = torch.from_numpy(exact_min_norm(jacobian @ jacobian.T)) @ jacobian
    assert cosine(d, mgda) > 1 - 1e-6


def test_cagrad_is_invariant_to_a_global_loss_scale() -> None:
    jacobian = random_jacobian(5)
    assert torch.allclose(combine("cagrad", jacobian)[1], combine("cagrad", 1e-4 * jacobian)[1], atol=1e-6)


# --------------------------------------------------------------------------------------------- IMGrad
def imgrad_reference(jacobian: Tensor, c: float, offset: float) -> Tensor:
    """Reference for K = 2 on the raw gradients: the released NYUv2 objective, minimised over x = w_1 ∈ [0, 1]."""
    g1, g2 = jacobian
    g0 = jacobian.mean(dim=0)
    gm = torch.from_numpy(exact_min_norm(jacobian @ jacobian.T)) @ jacobian
    cos = cosine(g0, gm)
    radius = c * float(g0.norm())

    def objective(x: float) -> float:
        gw = x * g1 + (1 - x) * g2
        return (offset - cos) * float(gw @ g0) + cos * radius * float(gw.norm())

    x = minimize_scalar(objective, bounds=(0, 1), method="bounded", options={"xatol": 1e-12}).x
    gw = x * g1 + (1 - x) * g2
    return 2 * (g0 + radius / float(gw.norm()) * gw) / (1 + c * c)


def test_imgrad_cosine_hand_computed() -> None:
    # g0 = (½, 1), MGDA α = (0.8, 0.2) → g_m = (0.8, 0.4); cos = 0.8 / (√1.25 · √0.8) = 0.8
    gramian = torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    assert mean_mgda_cosine(gramian) == pytest.approx(0.8, abs=1e-12)


@pytest.mark.parametrize("variant,offset", [("code", 1.5), ("paper", 1.0)])
@pytest.mark.parametrize("seed", range(3))
def test_imgrad_matches_a_reference(variant: str, offset: float, seed: int) -> None:
    jacobian = random_jacobian(seed, k=2, dim=5)
    d, _ = combine("imgrad", jacobian, variant=variant)
    reference = imgrad_reference(jacobian, 0.8, offset)
    assert torch.allclose(d, reference, rtol=1e-4, atol=1e-6 * float(reference.norm()))


def test_imgrad_symmetric_case_equals_cagrad() -> None:
    # equal-norm orthogonal gradients: cos θ = 1 and w* = (½, ½) in both, so the weights are CAGrad's
    _, w = combine("imgrad", torch.eye(2), alpha=0.8)
    assert torch.allclose(w, combine("cagrad", torch.eye(2), c=0.8)[1], atol=1e-6)


# --------------------------------------------------------------------------------------------- Nash-MTL
def test_nashmtl_orthogonal_gradients_hand_computed() -> None:
    # α_i = 1/‖g_i‖ for orthogonal gradients
    _, w = combine("nashmtl", torch.tensor([[2.0, 0.0], [0.0, 0.5]]), max_norm=0.0)
    assert torch.allclose(w, torch.tensor([0.5, 2.0], dtype=torch.float64), rtol=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_nashmtl_bargaining_equation(seed: int) -> None:
    jacobian = random_jacobian(seed, k=3 + seed % 2, dim=8)
    gramian = jacobian @ jacobian.T
    _, alpha = combine("nashmtl", jacobian, max_norm=0.0)
    assert bool((alpha > 0).all())
    assert torch.allclose(alpha * (gramian @ alpha), torch.ones_like(alpha), atol=1e-3)


def test_nashmtl_direction_is_invariant_to_loss_scales() -> None:
    jacobian = random_jacobian(7)
    scales = torch.tensor([10.0, 0.1, 3.0], dtype=torch.float64)
    d, alpha = combine("nashmtl", jacobian, max_norm=0.0)
    d_scaled, alpha_scaled = combine("nashmtl", scales.unsqueeze(1) * jacobian, max_norm=0.0)
    assert torch.allclose(d_scaled, d, rtol=1e-3, atol=1e-4 * float(d.norm()))
    assert torch.allclose(alpha_scaled * scales, alpha, rtol=1e-3)


def test_nashmtl_clipping_rescales_the_shared_weights_only() -> None:
    jacobian = random_jacobian(2)
    _, alpha = combine("nashmtl", jacobian, max_norm=0.0)
    balancer = create("nashmtl", tasks=tasks(3))
    d, w = balancer.combine(jacobian)
    # ‖d‖² = K > 1 at the solution, so the default max_norm = 1 always binds
    assert float(d.norm()) == pytest.approx(1.0, rel=1e-6)
    assert torch.allclose(w / w.sum(), alpha / alpha.sum(), rtol=1e-6)


def test_nashmtl_state_warm_start_and_update_every() -> None:
    first, second = random_jacobian(0), random_jacobian(1)
    balancer = create("nashmtl", tasks=tasks(3), update_weights_every=2, max_norm=0.0)
    _, w0 = balancer.combine(first)
    _, w1 = balancer.combine(second)
    assert torch.equal(w0, w1)  # step 1 reuses the weights of step 0
    assert torch.equal(balancer.state_dict()["alpha"], w0)
    resumed = create("nashmtl", tasks=tasks(3), update_weights_every=2, max_norm=0.0)
    resumed.load_state_dict(balancer.state_dict())
    assert torch.allclose(resumed.combine(first)[1], balancer.combine(first)[1])


def test_nashmtl_reuses_the_previous_weights_when_infeasible() -> None:
    balancer = create("nashmtl", tasks=tasks(3), max_norm=0.0)
    degenerate = random_jacobian(0)
    degenerate[1] = 0  # α_2 (G α)_2 = 0 < 1: no solution
    with pytest.warns(RuntimeWarning, match="no solution"):
        _, w = balancer.combine(degenerate)
    assert torch.equal(w, torch.ones(3, dtype=torch.float64))  # first step: the official start α = 1
    _, solved = balancer.combine(random_jacobian(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per balancer
        _, w = balancer.combine(degenerate)
    assert torch.equal(w, solved)


def test_nashmtl_solves_where_the_official_first_subproblem_is_unbounded() -> None:
    # (G 1)_1 < 0: the official CCP's linearisation at its start α = 1 has a negative coefficient and the first convex
    # sub-problem is unbounded, so the official code keeps α = 1; the Newton solver reaches the solution
    jacobian = random_jacobian(12, k=3, dim=4)
    gramian = jacobian @ jacobian.T
    assert float(gramian.sum(dim=1)[1]) < 0
    _, w = combine("nashmtl", jacobian, max_norm=0.0)
    torch.testing.assert_close(w * (gramian @ w), torch.ones(3, dtype=torch.float64), rtol=0, atol=1e-8)
    # the same solution as FairGrad's with α = 1 (the same equation)
    solution = combine("fairgrad", jacobian, alpha=1.0, max_norm=0.0)[1] / 3
    torch.testing.assert_close(w, solution, rtol=1e-8, atol=0)


# --------------------------------------------------------------------------------------------- FairGrad
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("seed", range(3))
def test_fairgrad_fairness_equation(alpha: float, seed: int) -> None:
    jacobian = random_jacobian(seed, k=3, dim=8)
    gramian = jacobian @ jacobian.T
    _, weights = combine("fairgrad", jacobian, alpha=alpha, max_norm=0.0)
    w = weights / 3  # undo ×K
    assert torch.allclose(gramian @ w, w ** (-1 / alpha), rtol=1e-8)


def test_fairgrad_orthogonal_gradients_hand_computed() -> None:
    # w_i ‖g_i‖² = w_i^{-1/α} ⇒ w_i = ‖g_i‖^{-2α/(α+1)}; α = 2, norms (1, 2) → (1, 2^{-4/3}); ×K = 2
    _, weights = combine("fairgrad", torch.tensor([[1.0, 0.0], [0.0, 2.0]]), max_norm=0.0)
    assert torch.allclose(weights, 2 * torch.tensor([1.0, 2 ** (-4 / 3)], dtype=torch.float64), rtol=1e-6)


def test_fairgrad_alpha_one_is_nash_mtl() -> None:
    jacobian = random_jacobian(6)
    _, fair = combine("fairgrad", jacobian, alpha=1.0, max_norm=0.0)
    _, nash = combine("nashmtl", jacobian, max_norm=0.0)
    assert torch.allclose(fair / 3, nash, rtol=1e-3)


def test_fairgrad_clipping_and_zero_gradient() -> None:
    jacobian = 10 * random_jacobian(1)
    d, _ = combine("fairgrad", jacobian)
    assert float(d.norm()) <= 1 + 1e-9
    jacobian[2] = 0
    _, weights = combine("fairgrad", jacobian, max_norm=0.0)
    assert weights[2] == 0
    w = weights[:2] / 3
    assert torch.allclose((jacobian @ jacobian.T)[:2, :2] @ w, w ** -0.5, rtol=1e-5)


# --------------------------------------------------------------------------------------------- UPGrad
def upgrad_reference(jacobian: Tensor) -> Tensor:
    """Reference: mean of the primal projections argmin_{J y ≥ 0} ‖y − g_i‖² on the raw Jacobian (cvxpy)."""
    j = jacobian.numpy()
    projections = []
    for row in j:
        y = cp.Variable(j.shape[1])
        cp.Problem(cp.Minimize(cp.sum_squares(y - row)), [j @ y >= 0]).solve(solver=cp.CLARABEL)
        projections.append(y.value)
    return torch.from_numpy(np.mean(projections, axis=0))


def test_upgrad_two_tasks_hand_computed() -> None:
    # g1 = (1, 0), g2 = (−1, 1): π(g1) = (½, ½) = g1 + ½ g2, π(g2) = (0, 1) = g1 + g2 → w = ½[(1, ½) + (1, 1)]
    d, w = combine("upgrad", torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
    assert torch.allclose(w, torch.tensor([1.0, 0.75], dtype=torch.float64), atol=1e-3)
    assert torch.allclose(d, torch.tensor([0.25, 0.75], dtype=torch.float64), atol=1e-3)


@pytest.mark.parametrize("seed", range(4))
def test_upgrad_never_conflicts_and_matches_the_primal(seed: int) -> None:
    # norms within a decade: reg_eps = 1e-4 is relative to tr(G), so a task with ‖g_i‖² ~ 1e-4 tr(G) is regularised
    # away from its exact projection (TorchJD's behaviour)
    jacobian = random_jacobian(seed, k=4, dim=6, spread=False)
    d, _ = combine("upgrad", jacobian)
    assert bool((jacobian @ d >= -1e-6 * float(d.norm() * jacobian.norm(dim=1).max())).all())
    reference = upgrad_reference(jacobian)
    # reg_eps = 1e-4 on the unit-trace Gramian biases the projection slightly toward the preference vector
    assert torch.allclose(d, reference, atol=2e-3 * float(reference.norm()))


def test_upgrad_non_conflicting_gradients_give_the_mean() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    d, _ = combine("upgrad", jacobian)
    assert torch.allclose(d, jacobian.double().mean(dim=0), atol=1e-3)


# --------------------------------------------------------------------------------------------- IMTL
def imtl_g_reference(jacobian: Tensor) -> Tensor:
    """Reference: the paper's closed form α_{2:T} = g_1 Uᵀ (D Uᵀ)^{-1}, α_1 = 1 − Σ α_{2:T}."""
    units = jacobian / jacobian.norm(dim=1, keepdim=True)
    d = jacobian[:1] - jacobian[1:]
    u = units[:1] - units[1:]
    rest = jacobian[0] @ u.T @ torch.linalg.inv(d @ u.T)
    return torch.cat([1 - rest.sum().unsqueeze(0), rest])


def test_imtl_g_two_tasks_hand_computed() -> None:
    # d = (α1, 2α2): equal projections α1 = 2α2 and Σα = 1 → (2/3, 1/3)
    _, w = combine("imtl", torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    assert torch.allclose(w, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
def test_imtl_g_equal_projections_and_closed_form(seed: int) -> None:
    jacobian = random_jacobian(seed, k=3 + seed % 2, dim=8)
    d, w = combine("imtl", jacobian)
    assert abs(float(w.sum())) == pytest.approx(1.0)  # −1 where the paper's normalisation would flip d (seeds 1, 3)
    projections = jacobian @ d / jacobian.norm(dim=1)
    assert torch.allclose(projections, projections.mean().expand_as(projections), rtol=1e-8)
    assert bool((projections > 0).all())
    reference = imtl_g_reference(jacobian)
    # the paper's Σα = 1 flips the update when its common projection is negative; ours keeps it positive
    sign = 1.0 if float(jacobian[0] @ (reference @ jacobian)) > 0 else -1.0
    assert torch.allclose(w, sign * reference, rtol=1e-6, atol=1e-9)


def test_imtl_g_direction_is_invariant_to_loss_scales() -> None:
    jacobian = random_jacobian(2)
    d, _ = combine("imtl", jacobian)
    d_scaled, _ = combine("imtl", torch.tensor([[5.0], [0.01], [1.0]], dtype=torch.float64) * jacobian)
    assert cosine(d, d_scaled) == pytest.approx(1.0, abs=1e-10)


def test_imtl_l_weights_and_scale_gradient() -> None:
    balancer = create("imtl", tasks=tasks(2), variant="l")
    assert balancer.requires == "losses" and len(list(balancer.parameters())) == 1
    with torch.no_grad():
        balancer.log_scales.copy_(torch.tensor([0.0, math.log(2.0)]))
    losses = torch.tensor([3.0, 0.25])
    _, w = balancer.combine(torch.eye(2), losses)
    assert torch.allclose(w, torch.tensor([1.0, 2.0], dtype=torch.float64))
    # ∂/∂s (e^s L − s) = e^s L − 1
    assert torch.allclose(balancer.log_scales.grad, torch.tensor([3.0 - 1.0, 0.5 - 1.0]))
    with pytest.raises(BalancerError, match="loss values"):
        balancer.combine(torch.eye(2))


def test_imtl_l_scales_converge_to_inverse_losses() -> None:
    balancer = create("imtl", tasks=tasks(2), variant="l")
    (scales,) = balancer.parameters()
    losses = torch.tensor([4.0, 0.5])
    for _ in range(60):  # plain gradient steps, lr 0.5
        scales.grad = None
        balancer.combine(torch.eye(2), losses)
        with torch.no_grad():
            scales -= 0.5 * scales.grad
    assert torch.allclose(balancer.log_scales.detach().exp(), 1 / losses, rtol=1e-3)


def test_imtl_h_is_imtl_g_on_the_scaled_losses() -> None:
    jacobian = random_jacobian(3)
    balancer = create("imtl", tasks=tasks(3), variant="h")
    scales = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    with torch.no_grad():
        balancer.log_scales.copy_(scales.log())
    d, w = balancer.combine(jacobian, torch.ones(3))
    scaled = scales.unsqueeze(1) * jacobian
    assert torch.allclose(d, imtl_g_weights(scaled @ scaled.T) @ scaled, rtol=1e-6)


# --------------------------------------------------------------------------------------------- Aligned-MTL
def test_aligned_mtl_orthogonal_hand_computed() -> None:
    # eigenvalues (9, 1): σ = 1 → B = diag(1/3, 1), d = (1, 1)
    d, w = combine("aligned_mtl", torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(w, torch.tensor([1 / 3, 1.0], dtype=torch.float64))
    assert torch.allclose(d, torch.tensor([1.0, 1.0], dtype=torch.float64))
    _, w = combine("aligned_mtl", torch.tensor([[3.0, 0.0], [0.0, 1.0]]), scale_mode="rmse")  # σ = 5
    assert torch.allclose(w, math.sqrt(5) * torch.tensor([1 / 3, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_aligned_components_are_orthogonal_with_equal_norms(scale_mode: str) -> None:
    jacobian = random_jacobian(4, k=4, dim=7)
    gramian = jacobian @ jacobian.T
    b = balance_transformation(gramian, scale_mode)
    aligned = b.T @ jacobian
    eigenvalues = torch.linalg.eigvalsh(gramian)
    sigma = {"min": eigenvalues.min(), "median": eigenvalues.median(), "rmse": eigenvalues.mean()}[scale_mode]
    assert torch.allclose(aligned @ aligned.T, sigma * torch.eye(4, dtype=torch.float64), atol=1e-9 * float(sigma))
    d, _ = combine("aligned_mtl", jacobian, scale_mode=scale_mode)
    assert torch.allclose(d, aligned.sum(dim=0))


def test_aligned_mtl_scale_properties() -> None:
    jacobian = random_jacobian(8)
    d, _ = combine("aligned_mtl", jacobian)
    assert torch.allclose(combine("aligned_mtl", 7.0 * jacobian)[0], 7.0 * d)
    orthogonal = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 5.0]])
    d, _ = combine("aligned_mtl", orthogonal)
    d_scaled, _ = combine("aligned_mtl", torch.tensor([[0.1], [4.0], [1.0]]) * orthogonal)
    assert cosine(d, d_scaled) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(combine("aligned_mtl", torch.ones(3, 4))[0], torch.full((4,), 3.0, dtype=torch.float64))


# --------------------------------------------------------------------------------------------- every method
@pytest.mark.parametrize("name", METHODS)
def test_task_permutation_equivariance(name: str) -> None:
    jacobian = random_jacobian(11, k=4, dim=9)
    losses = torch.tensor([0.5, 1.0, 2.0, 3.0])
    order = torch.tensor([2, 0, 3, 1])
    d, w = combine(name, jacobian, losses)
    d_perm, w_perm = combine(name, jacobian[order], losses[order])
    assert torch.allclose(w_perm, w[order], rtol=1e-4, atol=1e-7)
    assert torch.allclose(d_perm, d, rtol=1e-4, atol=1e-6 * float(d.norm()))


def degenerate_jacobians() -> dict[str, Tensor]:
    zero_row = random_jacobian(0, k=3, dim=5)
    zero_row[1] = 0
    return {
        "zero_task": zero_row,
        "identical": torch.tensor([[1.0, -2.0, 0.5]] * 3, dtype=torch.float64),
        "opposite": torch.tensor([[1.0, 2.0], [-1.0, -2.0]], dtype=torch.float64),
        "all_zero": torch.zeros(3, 4, dtype=torch.float64),
        "single_task": torch.tensor([[0.3, -1.0]], dtype=torch.float64),
        "single_zero_task": torch.zeros(1, 2, dtype=torch.float64),
        "rank_deficient": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64),
    }


@pytest.mark.parametrize("case", list(degenerate_jacobians()))
@pytest.mark.parametrize("name", [*METHODS, "imtl-h"])
def test_degenerate_inputs_give_finite_bounded_updates(name: str, case: str) -> None:
    jacobian = degenerate_jacobians()[case]
    options = {"variant": "h"} if name == "imtl-h" else {}
    losses = torch.ones(jacobian.shape[0])
    d, w = combine("imtl" if name == "imtl-h" else name, jacobian, losses, **options)  # _checked raises on NaN
    assert bool(torch.isfinite(d).all()) and bool(torch.isfinite(w).all())
    # no method's update exceeds K times the largest task gradient (the sum scale), up to its rescale factors
    bound = jacobian.shape[0] * float(jacobian.norm(dim=1).max()) * 1.5 + 1e-12
    assert float(d.norm()) <= bound
    if case in ("all_zero", "single_zero_task"):
        assert float(d.norm()) == 0.0


def test_documented_fallbacks_for_a_zero_task_gradient() -> None:
    jacobian = degenerate_jacobians()["zero_task"]
    # CAGrad: w* selects the zero gradient (‖g_w*‖ = 0), λ = 0 and d = K g_0 / (1 + c²) with finite weights
    d, w = combine("cagrad", jacobian)
    assert torch.allclose(w, torch.full((3,), 1 / 1.16, dtype=torch.float64), atol=1e-6)
    # IMTL-G, Aligned-MTL: the zero-gradient task gets weight 0, the others keep their defining property
    for name in ("imtl", "aligned_mtl"):
        d, w = combine(name, jacobian)
        assert w[1] == pytest.approx(0.0, abs=1e-12)
    live = jacobian[[0, 2]]
    d, _ = combine("imtl", jacobian)
    projections = live @ d / live.norm(dim=1)
    assert projections[0] == pytest.approx(float(projections[1]), rel=1e-9)
    # MGDA: the min-norm point is the zero gradient itself (Pareto-stationary), d ≈ 0
    d, _ = combine("mgda", jacobian)
    assert float(d.norm()) < 1e-4 * float(jacobian.norm())


@pytest.mark.parametrize(
    "name,options",
    [
        ("cagrad", {"c": -0.1}),
        ("cagrad", {"rescale": 3}),
        ("imgrad", {"variant": "other"}),
        ("nashmtl", {"optim_niter": 0}),
        ("fairgrad", {"alpha": 0.0}),
        ("upgrad", {"reg_eps": 0.0}),
        ("imtl", {"variant": "x"}),
        ("aligned_mtl", {"scale_mode": "max"}),
        ("mgda", {"normalization": "l1"}),
        ("mgda", {"unknown": 1}),
    ],
)
def test_bad_options_are_clear_errors(name: str, options: dict[str, object]) -> None:
    with pytest.raises(BalancerError, match="bad options"):
        create(name, tasks=tasks(2), **options)


# --------------------------------------------------------------------------------------------- backward()
class TinyModel(nn.Module):
    """Shared Linear+tanh encoder, one linear head per task; task losses on different scales."""

    def __init__(self, k: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(k))

    def losses(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        z = self.encoder(x)
        scales = torch.logspace(-1, 1, len(self.heads))
        losses = {}
        for i, (task, head) in enumerate(zip(TASKS, self.heads)):
            losses[task] = scales[i] * ((head(z).squeeze(1) - y[:, i]) ** 2).mean()
        return losses, z


def gradients(loss: Tensor, inputs: list[Tensor]) -> tuple[Tensor, ...]:
    return torch.autograd.grad(loss, inputs, retain_graph=True)


#: What multiplies each head's own loss gradient: MGDA weighs the heads by α, Nash-MTL by its unclipped α, IMTL-L/H
#: by e^s (the gradient of the task's scaled loss); the others leave the heads their raw loss gradients.
HEAD_COEFFICIENTS = {
    "mgda": "weights",
    "mgda-ub": "weights",
    "nashmtl": "alpha",
    "imtl-l": "scales",
    "imtl-h": "scales",
}
LOG_SCALES = torch.tensor([0.3, -0.2, 0.5])
VARIANTS = [(m, {}) for m in METHODS] + [("imtl", {"variant": "l"}), ("imtl", {"variant": "h"})]


@pytest.mark.parametrize("name,options", VARIANTS)
def test_backward_writes_the_combined_gradient(name: str, options: dict[str, str]) -> None:
    k = 3
    model = TinyModel(k)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    y = torch.randn(16, k, generator=torch.Generator().manual_seed(2))
    shared = list(model.encoder.parameters())
    losses, z = model.losses(x, y)
    loss_list = list(losses.values())
    loss_values = torch.stack([loss.detach() for loss in loss_list])

    # the expected result, from the functional core on a separately computed Jacobian
    source = [z] if get(name).default_source == "features" else shared
    jacobian = torch.stack([torch.cat([g.reshape(-1) for g in gradients(loss, source)]) for loss in loss_list])
    reference = create(name, tasks=tasks(k), **options)
    balancer = create(name, tasks=tasks(k), shared=model.encoder, **options)
    if options:  # IMTL-L/H: start both from the same non-trivial scales
        for imtl in (reference, balancer):
            imtl.log_scales.data.copy_(LOG_SCALES)
    _, weights = reference.combine(jacobian, loss_values)
    expected_shared = gradients(sum(float(w) * loss for w, loss in zip(weights, loss_list)), shared)
    raw_heads = [gradients(loss, list(head.parameters())) for loss, head in zip(loss_list, model.heads)]

    step = balancer.backward(losses, features=z)
    assert torch.allclose(torch.tensor(list(step.weights.values()), dtype=torch.float64), weights, rtol=1e-5, atol=1e-8)
    for p, g in zip(shared, expected_shared):
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6)
    kind = HEAD_COEFFICIENTS.get(name + ("-" + options["variant"] if options else ""), "ones")
    coefficients = {
        "weights": weights,
        "alpha": getattr(reference, "alpha", None),
        "scales": LOG_SCALES.exp(),
        "ones": torch.ones(k),
    }[kind]
    for coefficient, raw, head in zip(coefficients, raw_heads, model.heads):
        for p, g in zip(head.parameters(), raw):
            assert torch.allclose(p.grad, float(coefficient) * g, rtol=1e-5, atol=1e-7)
    if options:  # IMTL-L/H: ∂/∂s (e^s L − s) = e^s L − 1
        assert torch.allclose(balancer.log_scales.grad, LOG_SCALES.exp() * loss_values - 1)
