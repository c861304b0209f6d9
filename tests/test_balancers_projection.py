"""PCGrad, GradVac, GradDrop and DB-MTL: defining equations, hand-computed steps, invariances, independent code."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchjd.aggregation import GradVac as TorchJDGradVac
from torchjd.aggregation import PCGrad as TorchJDPCGrad

from taskbalance.balancers import BalancerError, create
from taskbalance.balancers.db_mtl import db_mtl_update
from taskbalance.balancers.graddrop import graddrop_direction, graddrop_direction_at_features
from taskbalance.balancers.gradvac import gradvac_weights
from taskbalance.balancers.helpers import random_orders
from taskbalance.balancers.pcgrad import pcgrad_weights

TASKS3 = ("a", "b", "c")


def vector_pcgrad(jacobian: torch.Tensor, orders: list[list[int]]) -> torch.Tensor:
    """Algorithm 1 of the paper, literally, on the gradient vectors."""
    total = torch.zeros(jacobian.shape[1], dtype=jacobian.dtype)
    for i, order in enumerate(orders):
        g = jacobian[i].clone()
        for j in order:
            dot = g @ jacobian[j]
            if dot < 0:
                g = g - dot / jacobian[j].norm() ** 2 * jacobian[j]
        total += g
    return total


def conflicting_jacobian(num_tasks: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_tasks, dim, generator=generator, dtype=torch.float64)


# ----------------------------------------------------------------------------- PCGrad
def test_pcgrad_hand_computed_two_tasks() -> None:
    # g1 = (1, 0), g2 = (-1, 1): g1·g2 = -1, so g1^PC = g1 + g2/2 = (.5, .5), g2^PC = g2 + g1 = (0, 1).
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    weights = pcgrad_weights(jacobian @ jacobian.T, [[1], [0]])
    assert torch.allclose(weights, torch.tensor([2.0, 1.5], dtype=torch.float64))
    assert torch.allclose(weights @ jacobian, torch.tensor([0.5, 1.5], dtype=torch.float64))


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_gramian_form_equals_algorithm_1(seed: int) -> None:
    jacobian = conflicting_jacobian(4, 7, seed)
    orders = random_orders(4, torch.Generator().manual_seed(seed))
    weights = pcgrad_weights(jacobian @ jacobian.T, orders)
    assert torch.allclose(weights @ jacobian, vector_pcgrad(jacobian, orders), atol=1e-10)


def test_random_orders_are_permutations_of_the_other_tasks() -> None:
    orders = random_orders(5, torch.Generator().manual_seed(3))
    for i, order in enumerate(orders):
        assert sorted(order) == [j for j in range(5) if j != i]


@pytest.mark.parametrize("seed", range(3))
def test_pcgrad_matches_torchjd_for_two_tasks(seed: int) -> None:
    jacobian = conflicting_jacobian(2, 6, seed)
    direction, _ = create("pcgrad", tasks=("a", "b")).combine(jacobian)
    assert torch.allclose(direction, TorchJDPCGrad()(jacobian), atol=1e-10)


def test_pcgrad_two_conflicting_tasks_become_orthogonal() -> None:
    jacobian = torch.tensor([[2.0, 1.0, 0.0], [-1.0, 0.5, 1.0]], dtype=torch.float64)
    gram = jacobian @ jacobian.T
    projected_1 = jacobian[0] - gram[0, 1] / gram[1, 1] * jacobian[1]
    assert abs(float(projected_1 @ jacobian[1])) < 1e-12
    direction, _ = create("pcgrad", tasks=("a", "b")).combine(jacobian)
    projected_2 = jacobian[1] - gram[0, 1] / gram[0, 0] * jacobian[0]
    assert torch.allclose(direction, projected_1 + projected_2)


def test_pcgrad_without_conflict_is_the_sum_and_is_positively_homogeneous() -> None:
    jacobian = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    direction, weights = create("pcgrad", tasks=TASKS3).combine(jacobian)
    assert torch.allclose(weights, torch.ones(3, dtype=torch.float64))
    conflicting = conflicting_jacobian(3, 5, 0)
    first, _ = create("pcgrad", tasks=TASKS3, seed=4).combine(conflicting)
    scaled, _ = create("pcgrad", tasks=TASKS3, seed=4).combine(3.0 * conflicting)
    assert torch.allclose(scaled, 3.0 * first)


def test_pcgrad_seed_controls_the_order() -> None:
    jacobian = conflicting_jacobian(4, 3, 11)
    outcomes = {tuple(create("pcgrad", tasks="abcd", seed=s).combine(jacobian)[0].tolist()) for s in range(12)}
    assert len(outcomes) > 1
    again = [create("pcgrad", tasks="abcd", seed=5).combine(jacobian)[0] for _ in range(2)]
    assert torch.equal(again[0], again[1])


# ----------------------------------------------------------------------------- GradVac
def test_gradvac_with_zero_targets_and_beta_zero_is_pcgrad() -> None:
    jacobian = conflicting_jacobian(4, 6, 2)
    orders = random_orders(4, torch.Generator().manual_seed(0))
    weights, targets = gradvac_weights(jacobian @ jacobian.T, torch.zeros(4, 4), orders, beta=0.0)
    assert torch.allclose(weights, pcgrad_weights(jacobian @ jacobian.T, orders), atol=1e-12)
    assert torch.equal(targets, torch.zeros(4, 4, dtype=torch.float64))


def test_gradvac_correction_reaches_the_target_cosine() -> None:
    jacobian = torch.tensor([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3]], dtype=torch.float64)
    targets = torch.full((2, 2), 0.6, dtype=torch.float64)
    weights, new_targets = gradvac_weights(jacobian @ jacobian.T, targets, [[1], [0]], beta=0.5)
    cosine = float(jacobian[0] @ jacobian[1] / (jacobian[0].norm() * jacobian[1].norm()))
    assert cosine < 0.6
    # the closed form sets cos(g_1 + w g_2, g_2) to the target, and the weights are 1 + each row's correction
    vaccinated_1 = jacobian[0] + _correction(jacobian, 0, 1, 0.6) * jacobian[1]
    assert math.isclose(_cos(vaccinated_1, jacobian[1]), 0.6, rel_tol=1e-9)
    expected = 1 + _correction(jacobian, 1, 0, 0.6), 1 + _correction(jacobian, 0, 1, 0.6)
    assert torch.allclose(weights, torch.tensor(expected, dtype=torch.float64))
    assert torch.allclose(new_targets[0, 1], torch.tensor(0.5 * 0.6 + 0.5 * cosine, dtype=torch.float64))


def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u @ v / (u.norm() * v.norm()))


def _correction(jacobian: torch.Tensor, i: int, j: int, target: float) -> float:
    """The paper's closed form for the coefficient of g_j added to g_i."""
    phi = _cos(jacobian[i], jacobian[j])
    ni, nj = float(jacobian[i].norm()), float(jacobian[j].norm())
    return ni * (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)) / (nj * math.sqrt(1 - target**2))


def test_gradvac_matches_torchjd_over_several_steps() -> None:
    ours, reference = create("gradvac", tasks=("a", "b")), TorchJDGradVac()
    for step in range(6):
        jacobian = conflicting_jacobian(2, 5, step)
        assert torch.allclose(ours.combine(jacobian)[0], reference(jacobian), atol=1e-6)
    # the targets are the EMA (β = 0.5) of the observed cosines
    assert ours.targets.abs().sum() > 0


def test_gradvac_skips_zero_gradients() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.5]], dtype=torch.float64)
    balancer = create("gradvac", tasks=TASKS3)
    balancer.combine(jacobian)
    assert torch.all(balancer.targets[:, 1] == 0) and torch.all(balancer.targets[1, :] == 0)
    assert balancer.targets[0, 2] != 0


# ----------------------------------------------------------------------------- GradDrop
def test_graddrop_flat_hand_computed() -> None:
    # columns: P = .5 (mixed), 0 (all negative), 1 (all positive)
    jacobian = torch.tensor([[1.0, -2.0, 3.0], [-1.0, -1.0, 1.0]])
    uniform = torch.tensor([0.3, 0.5, 0.9])
    direction = graddrop_direction(jacobian, uniform, torch.zeros(2))
    assert torch.allclose(direction, torch.tensor([1.0, -3.0, 4.0]))
    uniform = torch.tensor([0.7, 0.5, 0.9])  # P = .5 < U: the negative part of column 0 survives
    assert torch.allclose(graddrop_direction(jacobian, uniform, torch.zeros(2)), torch.tensor([-1.0, -3.0, 4.0]))


def test_graddrop_leak_one_is_the_sum_and_partial_leak_interpolates() -> None:
    jacobian = torch.tensor([[1.0, -2.0, 3.0], [-1.0, -1.0, 1.0]])
    uniform = torch.tensor([0.3, 0.5, 0.9])
    assert torch.allclose(graddrop_direction(jacobian, uniform, torch.ones(2)), jacobian.sum(0))
    # leak 1 on task b only: task b passes whole, task a is masked
    assert torch.allclose(
        graddrop_direction(jacobian, uniform, torch.tensor([0.0, 1.0])), torch.tensor([0.0, -3.0, 4.0])
    )


def test_graddrop_agreeing_signs_are_never_dropped() -> None:
    jacobian = torch.tensor([[1.0, -2.0, 3.0], [2.0, -1.0, 0.5]])
    for seed in range(3):
        direction, weights = create("graddrop", tasks=("a", "b"), seed=seed).combine(jacobian)
        assert torch.allclose(direction, jacobian.sum(0))
        assert torch.equal(weights, torch.ones(2, dtype=torch.float64))


def test_graddrop_mask_probability_is_the_purity() -> None:
    # one element, g = (3, -1): P = 1/2 (1 + 2/4) = .75, so E[d] = .75·3 + .25·(-1) = 2.
    balancer = create("graddrop", tasks=("a", "b"), seed=0)
    jacobian = torch.tensor([[3.0], [-1.0]]).expand(2, 4000).contiguous()
    direction, _ = balancer.combine(jacobian)
    assert abs(float(direction.mean()) - 2.0) < 0.1
    assert set(direction.tolist()) == {3.0, -1.0}


def test_graddrop_paper_variant_hand_computed() -> None:
    # batch of 2, 2 feature elements: A = [[1, -1], [2, 3]]; ∂L_i/∂A per task below.
    activation = torch.tensor([[1.0, -1.0], [2.0, 3.0]])
    grads_a = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    grads_b = torch.tensor([[-2.0, 0.5], [-2.0, 0.5]])
    jacobian = torch.stack([grads_a.reshape(-1), grads_b.reshape(-1)])
    # signals Σ_batch sign(A)·grad: a: (1+1, -1-1) = (2, -2); b: (-2-2, -.5+.5) = (-4, 0)
    # purity: element 0: ½(1 + (2-4)/6) = 1/3; element 1: ½(1 + (-2)/2) = 0
    # element 0: P > U keeps positive signals (task a); element 1: P < U keeps task a
    uniform = torch.tensor([0.2, 0.5])
    direction = graddrop_direction_at_features(jacobian, [activation], [uniform], torch.zeros(2))
    expected = torch.stack([grads_a[:, 0], grads_a[:, 1]], dim=1).reshape(-1)
    assert torch.allclose(direction, expected)
    uniform = torch.tensor([0.5, 0.5])  # element 0 now keeps the negative signal (task b)
    direction = graddrop_direction_at_features(jacobian, [activation], [uniform], torch.zeros(2))
    expected = torch.stack([grads_b[:, 0], grads_a[:, 1]], dim=1).reshape(-1)
    assert torch.allclose(direction, expected)


def test_graddrop_option_errors() -> None:
    with pytest.raises(BalancerError, match="leak"):
        create("graddrop", tasks=TASKS3, leak=(0.0, 1.0))
    with pytest.raises(BalancerError, match="features"):
        create("graddrop", tasks=TASKS3, variant="paper")
    with pytest.raises(BalancerError, match="last_layer"):
        create("graddrop", tasks=TASKS3, source="last_layer")


def test_graddrop_paper_variant_through_the_engine() -> None:
    torch.manual_seed(0)
    encoder, heads = nn.Linear(3, 4), nn.ModuleList([nn.Linear(4, 1) for _ in range(2)])
    balancer = create("graddrop", tasks=("a", "b"), shared=encoder, source="features", variant="paper", seed=1)
    z = torch.relu(encoder(torch.randn(5, 3)))
    losses = {"a": heads[0](z).pow(2).mean(), "b": (heads[1](z) - 1).pow(2).mean()}
    expected = [torch.autograd.grad(losses[t], h.weight, retain_graph=True)[0] for h, t in zip(heads, ("a", "b"))]
    balancer.backward(losses, features=z)  # frees the graph, like loss.backward()
    assert encoder.weight.grad is not None and torch.isfinite(encoder.weight.grad).all()
    for head, grad in zip(heads, expected):  # raw head gradients
        assert torch.allclose(head.weight.grad, grad)


# ----------------------------------------------------------------------------- DB-MTL
def test_db_mtl_first_two_steps_by_hand() -> None:
    jacobian = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    losses = torch.tensor([1.0, 0.5], dtype=torch.float64)
    balancer = create("db_mtl", tasks=("a", "b"))
    direction, weights = balancer.combine(jacobian, losses)
    # log-loss grads (3, 4) and (0, 2); EMA (0.3, 0.4), (0, 0.2); norms .5, .2; α = .5
    assert torch.allclose(direction, torch.tensor([0.3, 0.9], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(weights, torch.tensor([1.0, 2.5], dtype=torch.float64), atol=1e-6)
    direction, _ = balancer.combine(jacobian, losses)
    # EMA .9·(.3, .4) + .1·(3, 4) = (.57, .76), norm .95; .9·(0, .2) + .1·(0, 2) = (0, .38)
    assert torch.allclose(direction, torch.tensor([0.57, 0.76 + 0.95], dtype=torch.float64), atol=1e-6)


def test_db_mtl_sigma_decays_the_rate() -> None:
    ema, jacobian = torch.ones(1, 2), torch.zeros(1, 2)
    _, _, new_ema = db_mtl_update(ema, jacobian, torch.ones(1), step=4, beta=0.8, sigma=0.5)
    assert torch.allclose(new_ema, torch.full((1, 2), 0.8 / 2))


def test_db_mtl_is_invariant_to_loss_scale() -> None:
    jacobian = conflicting_jacobian(3, 5, 1)
    losses = torch.tensor([0.3, 2.0, 5.0], dtype=torch.float64)
    scale = torch.tensor([10.0, 0.1, 3.0], dtype=torch.float64)
    first, _ = create("db_mtl", tasks=TASKS3).combine(jacobian, losses)
    scaled, _ = create("db_mtl", tasks=TASKS3).combine(jacobian * scale[:, None], losses * scale)
    assert torch.allclose(first, scaled, atol=1e-6)


def test_db_mtl_state_before_and_after_first_step() -> None:
    jacobian, losses = conflicting_jacobian(2, 4, 0), torch.tensor([1.0, 2.0], dtype=torch.float64)
    fresh, used = create("db_mtl", tasks=("a", "b")), create("db_mtl", tasks=("a", "b"))
    used.combine(jacobian, losses)
    empty_state = fresh.state_dict()
    assert empty_state["ema"].numel() == 0
    fresh.load_state_dict(used.state_dict())  # grows the lazy buffer
    assert torch.equal(fresh.combine(jacobian, losses)[0], used.combine(jacobian, losses)[0])
    used.load_state_dict(empty_state)  # shrinks it back: behaves like a new balancer
    assert torch.equal(
        used.combine(jacobian, losses)[0], create("db_mtl", tasks=("a", "b")).combine(jacobian, losses)[0]
    )


def test_db_mtl_errors() -> None:
    balancer = create("db_mtl", tasks=("a", "b"))
    with pytest.raises(BalancerError, match="non-negative"):
        balancer.combine(torch.ones(2, 3), torch.tensor([1.0, -1.0]))
    with pytest.raises(BalancerError, match="loss values"):
        balancer.combine(torch.ones(2, 3))
    balancer.combine(torch.ones(2, 3), torch.ones(2))
    with pytest.raises(BalancerError, match="changed size"):
        balancer.combine(torch.ones(2, 4), torch.ones(2))
    with pytest.raises(BalancerError, match="params"):
        create("db_mtl", tasks=("a", "b"), source="features")


def test_db_mtl_heads_get_raw_log_loss_gradients() -> None:
    torch.manual_seed(0)
    encoder, heads = nn.Linear(3, 4), nn.ModuleList([nn.Linear(4, 1) for _ in range(2)])
    balancer = create("db_mtl", tasks=("a", "b"), shared=encoder)
    z = encoder(torch.randn(6, 3))
    losses = {"a": heads[0](z).pow(2).mean(), "b": (heads[1](z) - 2).pow(2).mean()}
    expected = [
        torch.autograd.grad(torch.log(losses[t] + 1e-8), h.weight, retain_graph=True)[0] for t, h in zip("ab", heads)
    ]
    balancer.backward(losses)
    for head, grad in zip(heads, expected):
        assert torch.allclose(head.weight.grad, grad, rtol=1e-5)
