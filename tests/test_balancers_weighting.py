"""Loss-weighting balancers: static, uw, gradnorm, dwa, rlw, famo, stch.

Expected values are computed here from the defining equations (by hand or with autograd on the method's own
objective), or taken from independent implementations (torch.optim.Adam, TorchJD), never from our own outputs.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from taskbalance.balancers import Balancer, BalancerError, NonFiniteLossError, create
from taskbalance.balancers.famo import famo_logit_grad
from taskbalance.balancers.gradnorm import gradnorm_weight_grad
from taskbalance.balancers.static import weight_grid

TASKS = ("a", "b")
LOSS_METHODS = ("static", "uw", "gradnorm", "dwa", "rlw", "famo", "stch")
STATEFUL = ("uw", "gradnorm", "dwa", "rlw", "famo", "stch")
# options that make the stateful phases short enough to be exercised in a few steps
QUICK: dict[str, dict[str, Any]] = {"stch": {"warmup_epochs": 1}, "rlw": {"seed": 3}}


def losses_of(*values: float) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


def zero_jacobian(k: int = 2) -> Tensor:
    return torch.zeros(k, 3, dtype=torch.float64)


def step(balancer: Balancer, *values: float, jacobian: Tensor | None = None) -> Tensor:
    """One method step without a model; returns the weights."""
    jac = zero_jacobian(len(values)) if jacobian is None else jacobian
    return balancer.combine(jac, losses_of(*values))[1]


# --------------------------------------------------------------------------------------------- a tiny model
class TinyMTL(nn.Module):
    def __init__(self, tasks: tuple[str, ...] = TASKS) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4))
        self.heads = nn.ModuleDict({t: nn.Linear(4, 1) for t in tasks})
        self.x = torch.randn(8, 3)
        self.y = {t: torch.randn(8, 1) * (i + 1) for i, t in enumerate(tasks)}

    def losses(self) -> dict[str, Tensor]:
        z = self.shared(self.x)
        return {t: ((head(z) - self.y[t]) ** 2).mean() for t, head in self.heads.items()}


def build(name: str, model: TinyMTL, **options: Any) -> Balancer:
    return create(name, tasks=tuple(model.heads), shared=model.shared, **{**QUICK.get(name, {}), **options})


def train(
    balancer: Balancer, model: TinyMTL, optimizer: torch.optim.Optimizer, steps: int, epoch_every: int = 2
) -> list[Tensor]:
    """A training loop that calls every hook; returns the weights used at each step."""
    used = []
    for i in range(steps):
        optimizer.zero_grad()
        result = balancer.backward(model.losses())
        used.append(torch.tensor([result.weights[t] for t in balancer.tasks], dtype=torch.float64))
        optimizer.step()
        if balancer.name == "famo":
            with torch.no_grad():
                balancer.post_step(model.losses())
        if (i + 1) % epoch_every == 0:
            balancer.epoch_end()
    return used


def optimizer_for(model: nn.Module, balancer: Balancer) -> torch.optim.Optimizer:
    return torch.optim.SGD([*model.parameters(), *balancer.parameters()], lr=0.05)


# --------------------------------------------------------------------------------------------- common contract
@pytest.mark.parametrize("name", LOSS_METHODS)
def test_backward_writes_the_gradient_of_the_weighted_sum(name: str) -> None:
    model = TinyMTL()
    balancer = build(name, model)
    opt = optimizer_for(model, balancer)
    train(balancer, model, opt, steps=5)  # leave the initial state (epochs, nadir, logits, ...)
    opt.zero_grad()
    result = balancer.backward(model.losses())
    weights = [result.weights[t] for t in TASKS]
    got = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    sum(w * loss for w, loss in zip(weights, model.losses().values())).backward()
    for g, p in zip(got, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", STATEFUL)
def test_state_dict_resume_continues_identically(name: str) -> None:
    model = TinyMTL()
    balancer = build(name, model)
    opt = optimizer_for(model, balancer)
    train(balancer, model, opt, steps=5)
    model2 = copy.deepcopy(model)
    fresh = build(name, model2, **({"seed": 99} if name == "rlw" else {}))  # a different seed must be overridden
    fresh.load_state_dict(balancer.state_dict())
    opt2 = optimizer_for(model2, fresh)
    expected = train(balancer, model, opt, steps=5)
    got = train(fresh, model2, opt2, steps=5)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    for p, q in zip([*model.parameters(), *balancer.parameters()], [*model2.parameters(), *fresh.parameters()]):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", LOSS_METHODS)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_raises_before_any_gradient(name: str, bad: float) -> None:
    model = TinyMTL()
    balancer = build(name, model)
    before = copy.deepcopy(balancer.state_dict())
    losses = model.losses()
    losses["b"] = losses["b"] * bad
    with pytest.raises(NonFiniteLossError):
        balancer.backward(losses)
    assert all(p.grad is None for p in [*model.parameters(), *balancer.parameters()])
    after = balancer.state_dict()
    assert after.keys() == before.keys()
    for key, value in after.items():
        if isinstance(value, dict):  # RLW's generator state: no number was drawn
            assert all(torch.equal(v, before[key][k]) for k, v in value.items()), key
        else:
            assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("name", LOSS_METHODS)
def test_single_task_and_zero_loss_give_finite_weights(name: str) -> None:
    model = TinyMTL(tasks=("only",))
    balancer = build(name, model)
    opt = optimizer_for(model, balancer)
    used = train(balancer, model, opt, steps=6)  # three epochs: past DWA's two and STCH's warm-up
    assert all(torch.isfinite(w).all() and w.shape == (1,) for w in used)
    for values in ([0.0, 1.5], [2.0, 0.0]):
        two = create(name, tasks=TASKS, **QUICK.get(name, {}))
        if name == "gradnorm":  # GradNorm divides by the first losses, which must be > 0 (tested below)
            step(two, 1.0, 2.0)
        w = step(two, *values, jacobian=torch.eye(2, 3, dtype=torch.float64))
        assert torch.isfinite(w).all() and (w >= 0).all()


# --------------------------------------------------------------------------------------------- static
def test_static_weights_and_validation() -> None:
    balancer = create("static", tasks=("semseg", "edge"), weights={"edge": 50.0, "semseg": 1.0})
    assert step(balancer, 3.0, 4.0).tolist() == [1.0, 50.0]
    assert step(create("static", tasks=TASKS), 3.0, 4.0).tolist() == [1.0, 1.0]
    with pytest.raises(BalancerError, match=r"missing \['edge'\].*unknown \['depth'\]"):
        create("static", tasks=("semseg", "edge"), weights={"semseg": 1.0, "depth": 2.0})
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(BalancerError, match="weights"):
            create("static", tasks=TASKS, weights={"a": 1.0, "b": bad})


def test_weight_grid() -> None:
    grid = weight_grid(TASKS, [1, 10])
    assert grid == [{"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 10.0}, {"a": 10.0, "b": 1.0}, {"a": 10.0, "b": 10.0}]
    grid = weight_grid(("semseg", "normals", "edge"), {"semseg": [1], "normals": [1, 10], "edge": [1, 10, 50]})
    assert len(grid) == 6 and all(g["semseg"] == 1.0 for g in grid)
    assert {(g["normals"], g["edge"]) for g in grid} == {(n, e) for n in (1, 10) for e in (1, 10, 50)}
    with pytest.raises(BalancerError, match=r"missing \['b'\]"):
        weight_grid(TASKS, {"a": [1.0]})
    with pytest.raises(BalancerError, match="no candidate"):
        weight_grid(TASKS, {"a": [1.0], "b": []})
    with pytest.raises(BalancerError, match="finite"):
        weight_grid(TASKS, [1.0, -2.0])


# --------------------------------------------------------------------------------------------- UW
def uw_objective(s: Tensor, losses: Tensor) -> Tensor:
    return (0.5 * torch.exp(-s) * losses + 0.5 * s).sum()


def test_uw_weights_and_log_variance_gradient_match_the_objective() -> None:
    balancer = create("uw", tasks=TASKS, init=0.3)
    losses = losses_of(2.0, 0.5)
    w = step(balancer, 2.0, 0.5)
    s = torch.full((2,), 0.3, dtype=torch.float64, requires_grad=True)
    value = uw_objective(s, losses)
    torch.testing.assert_close(w, torch.full((2,), 0.5 * math.exp(-0.3), dtype=torch.float64))
    (grad_s,) = torch.autograd.grad(value, s)
    torch.testing.assert_close(balancer.log_vars.grad.double(), grad_s, rtol=1e-6, atol=1e-7)
    step(balancer, 2.0, 0.5)  # accumulates like loss.backward()
    torch.testing.assert_close(balancer.log_vars.grad.double(), 2 * grad_s, rtol=1e-6, atol=1e-7)
    assert create("uw", tasks=TASKS).log_vars.tolist() == [-0.5, -0.5]


def test_uw_backward_equals_autograd_of_the_full_objective() -> None:
    model = TinyMTL()
    balancer = build("uw", model, init=0.2)
    balancer.backward(model.losses())
    got = [p.grad.clone() for p in [*model.parameters(), balancer.log_vars]]
    model.zero_grad()
    s = torch.full((2,), 0.2, requires_grad=True)
    uw_objective(s, torch.stack(list(model.losses().values()))).backward()
    for g, p in zip(got, [*model.parameters(), s]):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)


def test_uw_sgd_on_log_variance_reaches_the_optimum() -> None:
    balancer = create("uw", tasks=TASKS)
    opt = torch.optim.SGD(balancer.parameters(), lr=0.2)
    for _ in range(400):
        opt.zero_grad()
        step(balancer, 3.0, 0.25)
        opt.step()
    torch.testing.assert_close(balancer.log_vars.exp(), torch.tensor([3.0, 0.25]), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------- GradNorm
def test_gradnorm_two_steps_by_hand() -> None:
    balancer = create("gradnorm", tasks=TASKS, alpha=1.5, lr=0.1)
    jac = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)  # ‖∇_W L_i‖ = 1, 2
    assert step(balancer, 2.0, 1.0, jacobian=jac).tolist() == [1.0, 1.0]
    # step 1: r = (1, 1), G = (1, 2), target 1.5 → ∂ = (−1, +2); w = (1.1, 0.8) renormalised to sum 2
    w1 = torch.tensor([1.1, 0.8], dtype=torch.float64) * 2 / 1.9
    torch.testing.assert_close(balancer.weights, w1)
    assert balancer.initial_losses.tolist() == [2.0, 1.0]
    # step 2, losses (1, 1): L̃ = (0.5, 1), r = (2/3, 4/3); G = (w1[0], 2 w1[1])
    torch.testing.assert_close(step(balancer, 1.0, 1.0, jacobian=jac), w1)
    g = torch.stack([w1[0], 2 * w1[1]])
    target = g.mean() * torch.tensor([2 / 3, 4 / 3], dtype=torch.float64) ** 1.5
    sign = torch.sign(g - target)
    w2 = w1 - 0.1 * sign * torch.tensor([1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(balancer.weights, w2 * 2 / w2.sum())
    assert balancer.initial_losses.tolist() == [2.0, 1.0]  # L(0) is the first step's, kept


def test_gradnorm_gradient_is_the_autograd_of_l_grad() -> None:
    torch.manual_seed(1)
    for _ in range(20):
        w = torch.rand(3, dtype=torch.float64) + 0.5
        norms, losses, initial = (torch.rand(3, dtype=torch.float64) + 0.1 for _ in range(3))
        wr = w.clone().requires_grad_()
        g = wr * norms
        r = (losses / initial) / (losses / initial).mean()
        l_grad = (g - (g.mean() * r**1.5).detach()).abs().sum()
        (expected,) = torch.autograd.grad(l_grad, wr)
        torch.testing.assert_close(gradnorm_weight_grad(w, norms, losses, initial, 1.5), expected)


def test_gradnorm_equalises_weighted_gradient_norms_on_a_tiny_problem() -> None:
    model = TinyMTL()
    model.y["b"] = model.y["b"] * 20  # task b's last-layer gradient is much larger
    balancer = build("gradnorm", model, alpha=0.0, lr=0.001)  # α = 0: the target is the mean weighted norm
    gaps = []
    for _ in range(200):
        result = balancer.backward(model.losses())
        model.zero_grad()
        assert result.grad_norms is not None and math.isclose(sum(result.weights.values()), 2.0)
        weighted = [result.weights[t] * result.grad_norms[t] for t in TASKS]
        gaps.append(abs(weighted[0] - weighted[1]) / (sum(weighted) / 2))
    assert result.grad_norms["b"] > 5 * result.grad_norms["a"]
    assert gaps[0] > 1.0 and max(gaps[-50:]) < 0.08  # sign steps of size lr·‖g‖ keep a small oscillation


def test_gradnorm_rejects_bad_losses() -> None:
    with pytest.raises(BalancerError, match="L_i\\(0\\)"):
        step(create("gradnorm", tasks=TASKS), 0.0, 1.0)
    balancer = create("gradnorm", tasks=TASKS)
    step(balancer, 1.0, 1.0)
    with pytest.raises(BalancerError, match="non-negative"):
        step(balancer, -1.0, 1.0)


# --------------------------------------------------------------------------------------------- DWA
def dwa_by_hand(previous: list[float], before: list[float], temperature: float) -> list[float]:
    e = [math.exp(p / b / temperature) for p, b in zip(previous, before)]
    return [len(e) * x / sum(e) for x in e]


def test_dwa_epoch_weights_by_hand() -> None:
    balancer = create("dwa", tasks=TASKS)
    epochs = [[(1.0, 2.0), (3.0, 4.0)], [(1.0, 3.0), (1.0, 3.0)], [(0.5, 1.0)], [(1.0, 1.0)]]
    seen = []
    for losses in epochs:
        seen.append([step(balancer, *pair).tolist() for pair in losses])
        balancer.epoch_end()
    assert seen[0] == seen[1] == [[1.0, 1.0]] * 2
    # epoch 2: averages (2, 3) then (1, 3)
    assert seen[2][0] == pytest.approx(dwa_by_hand([1, 3], [2, 3], 2.0))
    # epoch 3: averages (1, 3) then (0.5, 1)
    assert seen[3][0] == pytest.approx(dwa_by_hand([0.5, 1], [1, 3], 2.0))


def test_dwa_matches_torchjd() -> None:
    from torchjd.scalarization import DWA as TorchJDDWA

    ours, theirs = create("dwa", tasks=("a", "b", "c"), temperature=1.5), TorchJDDWA(temperature=1.5)
    torch.manual_seed(2)
    for _ in range(5):
        for _ in range(3):
            values = (torch.rand(3, dtype=torch.float64) + 0.1).requires_grad_()
            (expected,) = torch.autograd.grad(theirs(values), values)
            torch.testing.assert_close(step(ours, *values.tolist()), expected)
        ours.epoch_end()
        theirs.step()


def test_dwa_iteration_window_by_hand() -> None:
    balancer = create("dwa", tasks=TASKS, mode="iteration", window=2)
    sequence = [(4.0, 1.0), (2.0, 1.0), (1.0, 1.0), (1.0, 2.0), (0.5, 2.0)]
    used = [step(balancer, *pair).tolist() for pair in sequence]
    assert used[:3] == [[1.0, 1.0]] * 3  # weights move once more than `window` steps have run
    # step 3: FIFO = [L0, L1, L2, L3]: ratio = mean(L2, L3) / mean(L0, L1)
    assert used[3] == pytest.approx(dwa_by_hand([1.0, 1.5], [3.0, 1.0], 2.0))
    assert used[4] == pytest.approx(dwa_by_hand([0.75, 2.0], [1.5, 1.0], 2.0))
    balancer.epoch_end()  # no-op in this mode


def test_dwa_degenerate_inputs() -> None:
    balancer = create("dwa", tasks=TASKS)
    with pytest.raises(BalancerError, match="no training step"):
        balancer.epoch_end()
    with pytest.raises(BalancerError, match=">= 0"):
        step(balancer, -1.0, 1.0)
    for losses in ((0.0, 1.0), (0.0, 1.0), (2.0, 1.0)):
        step(balancer, *losses)
        balancer.epoch_end()
    w = step(balancer, 1.0, 1.0)  # ratios 0/0 → 0 and 2/0 → huge: finite, task a takes nearly all the weight
    assert torch.isfinite(w).all() and w[0] == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------- RLW
def test_rlw_weights_distribution_and_reproducibility() -> None:
    draws = torch.stack([step(create("rlw", tasks=TASKS, seed=5), 1.0, 1.0) for _ in range(3)])
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    balancer = create("rlw", tasks=("a", "b", "c"), seed=0)
    w = torch.stack([balancer.combine(zero_jacobian(3), losses_of(1, 1, 1))[1] for _ in range(2000)])
    torch.testing.assert_close(w.sum(1), torch.ones(2000, dtype=torch.float64))
    assert (w > 0).all()
    assert w.mean(0).tolist() == pytest.approx([1 / 3] * 3, abs=0.015)  # exchangeable
    log_ratio = (w[:, 0] / w[:, 1]).log()  # = λ̃_a − λ̃_b ~ N(0, 2)
    assert float(log_ratio.std()) == pytest.approx(math.sqrt(2), rel=0.05)
    assert abs(float(log_ratio.mean())) < 0.1
    other = create("rlw", tasks=("a", "b", "c"), seed=1)
    assert not torch.equal(step(other, 1, 1, 1), w[0])


def test_rlw_unseeded_follows_torch_global_seed() -> None:
    torch.manual_seed(7)
    balancer = create("rlw", tasks=TASKS)
    first = step(balancer, 1.0, 1.0)
    torch.manual_seed(7)
    again = create("rlw", tasks=TASKS)
    assert again.options.seed == balancer.options.seed and torch.equal(step(again, 1.0, 1.0), first)
    torch.manual_seed(8)
    assert not torch.equal(step(create("rlw", tasks=TASKS), 1.0, 1.0), first)


# --------------------------------------------------------------------------------------------- FAMO
def test_famo_weights_by_hand_and_as_the_official_loss_gradient() -> None:
    balancer = create("famo", tasks=TASKS)
    torch.testing.assert_close(step(balancer, 1.0, 4.0), losses_of(0.8, 0.2), rtol=1e-7, atol=0)
    balancer.post_step(losses_of(0.5, 3.0))
    xi = balancer.logits.clone()
    losses = losses_of(0.7, 2.5).requires_grad_()
    z = torch.softmax(xi, 0)
    d = losses + 1e-8
    official = (d.log() * z / (z / d).sum().detach()).sum()
    (expected,) = torch.autograd.grad(official, losses)
    torch.testing.assert_close(step(balancer, 0.7, 2.5), expected)


def test_famo_post_step_favours_the_task_whose_loss_decreased_less() -> None:
    balancer = create("famo", tasks=("a", "b", "c"))
    step(balancer, 1.0, 1.0, 1.0)
    balancer.post_step({"a": torch.tensor(0.5), "b": torch.tensor(0.9), "c": torch.tensor(0.7)})
    assert balancer.logits[1] > balancer.logits[2] > balancer.logits[0]
    w = step(balancer, 1.0, 1.0, 1.0)
    assert w[1] > w[2] > w[0]


def test_famo_logit_update_is_adam_on_the_softmax_vjp() -> None:
    gamma, lr = 1e-2, 0.05
    balancer = create("famo", tasks=("a", "b", "c"), w_lr=lr, gamma=gamma, min_losses={"a": -1.0, "b": 0.0, "c": 0.5})
    bounds = torch.tensor([-1.0, 0.0, 0.5], dtype=torch.float64)
    xi = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([xi], lr=lr, weight_decay=gamma)
    torch.manual_seed(3)
    for _ in range(6):
        before, after = (
            bounds + torch.rand(3, dtype=torch.float64) + 0.1,
            bounds + torch.rand(3, dtype=torch.float64) + 0.1,
        )
        step(balancer, *before.tolist(), jacobian=zero_jacobian(3))
        balancer.post_step(after)
        delta = (before - bounds + 1e-8).log() - (after - bounds + 1e-8).log()
        (xi.grad,) = torch.autograd.grad(torch.softmax(xi, 0), xi, grad_outputs=delta)
        torch.testing.assert_close(famo_logit_grad(xi.detach(), before - bounds + 1e-8, after - bounds + 1e-8), xi.grad)
        adam.step()
        torch.testing.assert_close(balancer.logits, xi.detach(), rtol=1e-10, atol=1e-12)


def test_famo_matches_torchjd() -> None:
    from torchjd.scalarization import FAMO as TorchJDFAMO

    ours, theirs = create("famo", tasks=TASKS, gamma=1e-3), TorchJDFAMO(2, lr=0.025, weight_decay=1e-3)
    torch.manual_seed(4)
    for _ in range(8):
        values = (torch.rand(2) + 0.2).requires_grad_()
        (expected,) = torch.autograd.grad(theirs(values), values)
        torch.testing.assert_close(step(ours, *values.tolist()).float(), expected, rtol=1e-5, atol=1e-6)
        after = values.detach() * 0.9 + 0.01 * torch.rand(2)
        ours.post_step(after)
        theirs.update(after)
    torch.testing.assert_close(ours.logits.float(), theirs._w.detach(), rtol=1e-5, atol=1e-6)


def test_famo_misuse_is_a_clear_error() -> None:
    balancer = create("famo", tasks=TASKS)
    with pytest.raises(BalancerError, match="must follow"):
        balancer.post_step(losses_of(1.0, 1.0))
    with pytest.raises(BalancerError, match="below min_losses"):
        step(balancer, -0.5, 1.0)
    step(balancer, 0.0, 1.0)  # a loss equal to its bound is allowed
    with pytest.raises(BalancerError, match="post_step"):
        step(balancer, 1.0, 1.0)
    with pytest.raises(BalancerError, match=r"missing \['b'\]"):
        balancer.post_step({"a": torch.tensor(1.0)})
    with pytest.raises(NonFiniteLossError):
        balancer.post_step(losses_of(1.0, math.nan))
    with pytest.raises(BalancerError, match=r"unknown \['z'\]"):
        create("famo", tasks=TASKS, min_losses={"a": 0.0, "b": 0.0, "z": 0.0})
    with pytest.raises(BalancerError, match="min_losses"):
        create("famo", tasks=TASKS, min_losses=-math.inf)


# --------------------------------------------------------------------------------------------- STCH
def stch_official(losses: Tensor, nadir: Tensor | None, mu: float) -> Tensor:
    """The official scalarization (Xi-L/STCH), whose gradient w.r.t. the losses the weights must equal."""
    if nadir is None:
        return torch.log(losses + 1e-20).sum()
    logs = torch.log(losses / nadir + 1e-20)
    return mu * torch.log(torch.exp((logs - logs.detach().max()) / mu).sum()) * losses.numel()


def test_stch_warmup_nadir_and_weights_equal_the_scalarization_gradient() -> None:
    balancer = create("stch", tasks=("a", "b", "c"), warmup_epochs=1, mu=0.5)
    epochs = [[(1.0, 2.0, 4.0)], [(2.0, 1.0, 3.0), (4.0, 3.0, 1.0)], [(1.5, 1.0, 0.5), (3.0, 2.0, 0.1)]]
    nadir = None
    for e, batch in enumerate(epochs):
        for values in batch:
            losses = losses_of(*values).requires_grad_()
            (expected,) = torch.autograd.grad(stch_official(losses, nadir, 0.5), losses)
            torch.testing.assert_close(step(balancer, *values, jacobian=zero_jacobian(3)), expected)
        balancer.epoch_end()
        if e == 1:
            nadir = losses_of(3.0, 2.0, 2.0)  # mean loss of epoch warmup_epochs = 1
            torch.testing.assert_close(balancer.nadir, nadir)
        assert bool(balancer.has_nadir) == (e >= 1)
    assert step(balancer, 1.0, 2.0, 4.0, jacobian=zero_jacobian(3)).tolist() != [1.0, 0.5, 0.25]


def test_stch_errors() -> None:
    balancer = create("stch", tasks=TASKS, warmup_epochs=0)
    with pytest.raises(BalancerError, match="no training step"):
        balancer.epoch_end()
    with pytest.raises(BalancerError, match=">= 0"):
        step(balancer, -0.1, 1.0)
    step(balancer, 0.0, 1.0)
    with pytest.raises(BalancerError, match="nadir"):
        balancer.epoch_end()
