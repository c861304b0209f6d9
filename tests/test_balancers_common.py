"""What every method in ``available()`` must do, built by name with its defaults.

Methods with extra hooks are driven generically: ``post_step`` (with the losses shrunk by 10 %, as if the
optimizer step helped) and ``epoch_end`` follow every step, so each step is also an epoch.
"""

from __future__ import annotations

import io
import sys

import pytest
import torch
from torch import Tensor, nn

from taskbalance.balancers import Balancer, BalancerError, available, create, get

METHODS = sorted(available())
TASKS = ("a", "b", "c")
DIM = 6


def losses_for(num_tasks: int, step: int = 0) -> Tensor:
    return torch.tensor([1.0, 0.5, 2.0][:num_tasks], dtype=torch.float64) * (0.9**step)


def random_jacobian(num_tasks: int, seed: int) -> Tensor:
    return torch.randn(num_tasks, DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def step(balancer: Balancer, jacobian: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
    direction, weights = balancer.combine(jacobian, losses)
    balancer.post_step(losses * 0.9)
    balancer.epoch_end()
    return direction, weights


def degenerate(case: str) -> Tensor:
    jacobian = random_jacobian(3, 0)
    if case == "zero_row":
        jacobian[1] = 0
    elif case == "identical_rows":
        jacobian[:] = jacobian[0]
    elif case == "all_zero":
        jacobian.zero_()
    elif case == "single_task":
        jacobian = jacobian[:1]
    return jacobian


@pytest.mark.parametrize("case", ["zero_row", "identical_rows", "all_zero", "single_task"])
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_inputs_give_finite_steps_or_a_balancer_error(method: str, case: str) -> None:
    jacobian = degenerate(case)
    balancer = create(method, tasks=TASKS[: jacobian.shape[0]])
    try:
        for k in range(3):
            direction, weights = step(balancer, jacobian, losses_for(jacobian.shape[0], k))
            assert weights.shape == (jacobian.shape[0],)
            assert torch.isfinite(weights).all(), f"{method} weights {weights.tolist()} on {case}"
            assert torch.isfinite(direction).all(), f"{method} direction on {case}"
    except BalancerError as error:  # a deliberate, explained refusal is allowed
        assert str(error)


def _roundtrip(state: dict[str, object]) -> dict[str, object]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_round_trip_continues_exactly(method: str) -> None:
    trained = create(method, tasks=TASKS)
    for k in range(2):
        step(trained, random_jacobian(3, k), losses_for(3, k))
    resumed = create(method, tasks=TASKS)
    resumed.load_state_dict(_roundtrip(trained.state_dict()))
    for k in range(2, 4):
        jacobian, losses = random_jacobian(3, k), losses_for(3, k)
        expected, got = step(trained, jacobian, losses), step(resumed, jacobian, losses)
        assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1]), f"{method} diverged at step {k}"


@pytest.mark.parametrize("method", METHODS)
def test_loading_a_fresh_state_resets_the_method(method: str) -> None:
    fresh_state = _roundtrip(create(method, tasks=TASKS).state_dict())
    used = create(method, tasks=TASKS)
    for k in range(2):
        step(used, random_jacobian(3, k), losses_for(3, k))
    used.load_state_dict(fresh_state)
    new = create(method, tasks=TASKS)  # loads the same state: unseeded methods draw their seed at construction
    new.load_state_dict(fresh_state)
    for k in range(2):
        jacobian, losses = random_jacobian(3, 10 + k), losses_for(3, k)
        expected, got = step(new, jacobian, losses), step(used, jacobian, losses)
        assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1]), f"{method} kept state at step {k}"


@pytest.mark.parametrize("method", METHODS)
def test_unknown_option_names_the_methods_options(method: str) -> None:
    with pytest.raises(BalancerError, match=f"options of {get(method).name}"):
        create(method, tasks=TASKS, no_such_option=1)


@pytest.mark.parametrize("method", METHODS)
def test_description_and_documentation(method: str) -> None:
    description = available()[method]
    assert description.strip() and "\n" not in description and len(description) <= 160
    cls = get(method)
    assert cls.name == method and cls.requires in ("losses", "gramian", "jacobian")
    assert (sys.modules[cls.__module__].__doc__ or "").strip(), f"{method} has no module docstring"
    for field, info in cls.Options.model_fields.items():
        assert info.description, f"{method} option {field} has no description"


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5))
        self.heads = nn.ModuleList(nn.Linear(5, 1) for _ in TASKS)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.encoder(x)
        return z, {t: (head(z) - i).pow(2).mean() + 0.1 for i, (t, head) in enumerate(zip(TASKS, self.heads))}


def sources_of(method: str) -> list[str | None]:
    cls = get(method)
    return [None] if cls.requires == "losses" else list(cls.supported_sources)


@pytest.mark.parametrize(("method", "source"), [(m, s) for m in METHODS for s in sources_of(m)])
def test_training_steps_through_the_engine(method: str, source: str | None) -> None:
    model = TinyModel()
    balancer = create(method, tasks=TASKS, shared=model.encoder, **({} if source is None else {"source": source}))
    trained = [*model.parameters(), *balancer.parameters()]  # plain SGD (torch.optim imports torch._dynamo: slow)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for p in trained:
            p.grad = None
        z, losses = model(x)
        result = balancer.backward(losses, features=z, diagnose="params")
        assert result.gramian is not None and set(result.weights) == set(TASKS)
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), f"{method}/{source}"
        with torch.no_grad():
            for p in trained:
                if p.grad is not None:
                    p -= 1e-2 * p.grad
            balancer.post_step(model(x)[1])
        balancer.epoch_end()
