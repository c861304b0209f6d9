"""The engine: per-task gradients on each source, the write-back into ``.grad``, input errors and diagnostics."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from taskbalance.balancers import Aggregation, Balancer, BalancerError, NonFiniteLossError, StepInputs, create

TASKS = ("a", "b", "c")
WEIGHTS = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)


class FixedWeights(Balancer):
    """Test method: constant weights, records what the engine handed over."""

    name: ClassVar[str] = "fixed-test"
    requires = "gramian"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[StepInputs] = []

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        self.seen.append(inputs)
        return Aggregation(weights=WEIGHTS.clone())


class FixedDirection(FixedWeights):
    """Test method: an explicit direction (twice the first task's gradient)."""

    requires = "jacobian"

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.jacobian is not None
        return Aggregation(weights=WEIGHTS.clone(), direction=2 * inputs.jacobian[0])


class Model(nn.Module):
    def __init__(self, leak: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5))
        self.heads = nn.ModuleDict({t: nn.Linear(5, 1) for t in TASKS})
        self.leak = leak

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.encoder(x)
        losses = {t: (head(z) - i).pow(2).mean() for i, (t, head) in enumerate(self.heads.items())}
        if self.leak:  # a head that reads a shared parameter directly
            losses["a"] = losses["a"] + self.encoder[0].bias.sum()
        return z, losses


def data() -> Tensor:
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(1))


def per_task_grads(model: Model, params: list[Tensor]) -> list[list[Tensor]]:
    """∇_params L_i for every task, by plain autograd on a fresh forward."""
    _, losses = model(data())
    return [list(torch.autograd.grad(losses[t], params, retain_graph=True, allow_unused=True)) for t in TASKS]


def every_task_grad(model: Model) -> list[list[Tensor]]:
    """∇ L_i over every parameter of the model (zeros where L_i does not reach it)."""
    params = list(model.parameters())
    return [
        [torch.zeros_like(p) if g is None else g for p, g in zip(params, row)] for row in per_task_grads(model, params)
    ]


def combined(grads: list[list[Tensor]], weights: Tensor) -> list[Tensor]:
    return [sum(float(w) * g[k] for w, g in zip(weights, grads)) for k in range(len(grads[0]))]


def all_grads(model: nn.Module) -> list[Tensor | None]:
    return [p.grad for p in model.parameters()]


@pytest.mark.parametrize("source", ["params", "last_layer", "features"])
@pytest.mark.parametrize("heads", ["weighted", "raw"])
def test_shared_grad_is_j_transpose_w_and_heads_as_configured(source: str, heads: str) -> None:
    model = Model()
    shared = list(model.encoder.parameters())
    expected_shared = combined(per_task_grads(model, shared), WEIGHTS)
    balancer = FixedWeights(TASKS, shared=model.encoder, source=source, head_gradients=heads)
    z, losses = model(data())
    balancer.backward(losses, features=z)
    for p, g in zip(shared, expected_shared):
        assert torch.allclose(p.grad, g, atol=1e-6)
    for i, head in enumerate(model.heads.values()):
        raw = per_task_grads(model, [head.weight])[i][0]
        factor = float(WEIGHTS[i]) if heads == "weighted" else 1.0
        assert torch.allclose(head.weight.grad, factor * raw, atol=1e-6)


@pytest.mark.parametrize("source", ["params", "last_layer", "features"])
def test_the_method_sees_the_gramian_of_its_source(source: str) -> None:
    model = Model()
    balancer = FixedWeights(TASKS, shared=model.encoder, source=source)
    z, losses = model(data())
    if source == "features":
        rows = [torch.autograd.grad(losses[t], z, retain_graph=True)[0].reshape(-1) for t in TASKS]
    else:
        params = list(model.encoder[2].parameters()) if source == "last_layer" else list(model.encoder.parameters())
        rows = [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], params, retain_graph=True)]) for t in TASKS
        ]
    jacobian = torch.stack(rows).double()
    balancer.backward(losses, features=z)
    assert torch.allclose(balancer.seen[0].gramian, jacobian @ jacobian.T, rtol=1e-5)
    assert torch.equal(balancer.seen[0].losses, torch.tensor([losses[t].item() for t in TASKS], dtype=torch.float64))


@pytest.mark.parametrize("source", ["params", "features"])
def test_explicit_direction_is_written(source: str) -> None:
    model = Model()
    balancer = FixedDirection(TASKS, shared=model.encoder, source=source, head_gradients="raw")
    shared = list(model.encoder.parameters())
    expected = [2 * g for g in per_task_grads(model, shared)[0]]  # d_z = 2 ∇_z L_a gives 2 ∇_θ L_a too
    z, losses = model(data())
    step = balancer.backward(losses, features=z)
    for p, g in zip(shared, expected):
        assert torch.allclose(p.grad, g, atol=1e-6)
    # diagnostics use the explicit direction: cos(g_a, d) = 1
    assert step.cosines_to_update is not None and step.cosines_to_update["a"] == pytest.approx(1.0)


def test_explicit_direction_refuses_last_layer() -> None:
    model = Model()
    z, losses = model(data())
    with pytest.raises(BalancerError, match="direction"):
        FixedDirection(TASKS, shared=model.encoder, source="last_layer").backward(losses)
    assert all(g is None for g in all_grads(model))


@pytest.mark.parametrize("source", ["params", "last_layer", "features"])
def test_gradients_accumulate(source: str) -> None:
    model = Model()
    balancer = FixedWeights(TASKS, shared=model.encoder, source=source)
    for _ in range(2):
        z, losses = model(data())
        balancer.backward(losses, features=z)
    twice = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    z, losses = model(data())
    balancer.backward(losses, features=z)
    for p, g in zip(model.parameters(), twice):
        assert torch.allclose(2 * p.grad, g, atol=1e-6)


def test_features_source_backprops_the_encoder_once() -> None:
    model = Model()
    calls = []
    model.encoder[0].weight.register_hook(lambda g: calls.append(1))
    balancer = FixedWeights(TASKS, shared=model.encoder, source="features")
    z, losses = model(data())
    balancer.backward(losses, features=z)
    assert len(calls) == 1


def test_features_source_rejects_a_head_reading_shared_parameters() -> None:
    model = Model(leak=True)
    balancer = FixedWeights(TASKS, shared=model.encoder, source="features")
    z, losses = model(data())
    with pytest.raises(BalancerError, match="bypasses the features"):
        balancer.backward(losses, features=z)
    assert all(g is None for g in all_grads(model))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda losses: {k: v for k, v in losses.items() if k != "b"}, "expected"),
        (lambda losses: {**losses, "d": losses["a"]}, "expected"),
        (lambda losses: {**losses, "b": losses["b"].expand(2)}, "scalar"),
        (lambda losses: {**losses, "b": losses["b"].detach()}, "require grad"),
        (lambda losses: {**losses, "b": 1.0}, "scalar"),
    ],
)
def test_bad_losses_give_clear_errors(edit: Any, message: str) -> None:
    model = Model()
    z, losses = model(data())
    for balancer in (create("uniform", tasks=TASKS), FixedWeights(TASKS, shared=model.encoder)):
        with pytest.raises(BalancerError, match=message):
            balancer.backward(edit(losses), features=z)
    assert all(g is None for g in all_grads(model))


def test_losses_must_be_a_mapping() -> None:
    model = Model()
    _, losses = model(data())
    with pytest.raises(BalancerError, match="dict"):
        create("uniform", tasks=TASKS).backward(list(losses.values()))  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["uniform", "fixed"])
def test_nan_loss_names_the_task_and_writes_nothing(method: str) -> None:
    model = Model()
    z, losses = model(data())
    losses["b"] = losses["b"] * float("nan")
    balancer = create("uniform", tasks=TASKS) if method == "uniform" else FixedWeights(TASKS, shared=model.encoder)
    with pytest.raises(NonFiniteLossError, match="'b'") as error:
        balancer.backward(losses, features=z)
    assert error.value.task == "b"
    assert all(g is None for g in all_grads(model))
    assert int(balancer.step_count) == 0


def test_missing_shared_or_features_give_clear_errors() -> None:
    model = Model()
    z, losses = model(data())
    with pytest.raises(BalancerError, match="shared="):
        FixedWeights(TASKS, source="params").backward(losses)
    with pytest.raises(BalancerError, match="last_layer"):
        FixedWeights(TASKS, source="last_layer").backward(losses)
    with pytest.raises(BalancerError, match="features="):
        FixedWeights(TASKS, shared=model.encoder, source="features").backward(losses)
    with pytest.raises(BalancerError, match="source must be"):
        FixedWeights(TASKS, shared=model.encoder).backward(losses, source="encoder")  # type: ignore[arg-type]
    with pytest.raises(BalancerError, match="diagnose"):
        create("uniform", tasks=TASKS).backward(losses, diagnose="encoder")  # type: ignore[arg-type]
    assert all(g is None for g in all_grads(model))


def test_diagnostics_match_hand_computation() -> None:
    model = Model()
    shared = list(model.encoder.parameters())
    grads = [torch.cat([g.reshape(-1) for g in row]).double() for row in per_task_grads(model, shared)]
    update = sum(float(w) * g for w, g in zip(WEIGHTS, grads))
    balancer = FixedWeights(TASKS, shared=model.encoder)
    z, losses = model(data())
    step = balancer.backward(losses)
    assert step.source == "params"
    assert step.weights == {t: float(w) for t, w in zip(TASKS, WEIGHTS)}
    assert step.losses == pytest.approx({t: losses[t].item() for t in TASKS})
    assert step.grad_norms == pytest.approx({t: float(g.norm()) for t, g in zip(TASKS, grads)}, rel=1e-5)
    cosines = step.pairwise_cosines()
    assert cosines is not None
    for i in range(3):
        for j in range(3):
            expected = float(grads[i] @ grads[j] / (grads[i].norm() * grads[j].norm()))
            assert float(cosines[i, j]) == pytest.approx(expected, abs=1e-5)
    to_update = {t: float(g @ update / (g.norm() * update.norm())) for t, g in zip(TASKS, grads)}
    assert step.cosines_to_update == pytest.approx(to_update, abs=1e-5)
    assert step.direction_norm == pytest.approx(float(update.norm()), rel=1e-5)


def test_zero_gradient_has_zero_cosines() -> None:
    model = Model()
    z, losses = model(data())
    losses["c"] = 0.0 * losses["c"]
    step = FixedWeights(TASKS, shared=model.encoder).backward(losses)
    assert step.grad_norms is not None and step.grad_norms["c"] == 0.0
    cosines = step.pairwise_cosines()
    assert cosines is not None and torch.all(cosines[2] == 0)
    assert step.cosines_to_update is not None and step.cosines_to_update["c"] == 0.0


def test_loss_only_method_with_last_layer_diagnosis() -> None:
    model = Model()
    last = list(model.encoder[2].parameters())
    rows = [torch.cat([g.reshape(-1) for g in row]).double() for row in per_task_grads(model, last)]
    expected_shared = combined(per_task_grads(model, list(model.encoder.parameters())), torch.ones(3))
    balancer = create("uniform", tasks=TASKS, shared=model.encoder)
    z, losses = model(data())
    step = balancer.backward(losses, diagnose="last_layer")
    assert step.source == "last_layer" and step.gramian is not None
    jacobian = torch.stack(rows)
    assert torch.allclose(step.gramian, jacobian @ jacobian.T, rtol=1e-5)
    assert step.cosines_to_update is not None
    for p, g in zip(model.encoder.parameters(), expected_shared):
        assert torch.allclose(p.grad, g, atol=1e-6)
    # without diagnose a loss-only method computes no per-task gradients at all
    z, losses = model(data())
    assert balancer.backward(losses).gramian is None


def test_step_counter_and_combine_agree_with_backward() -> None:
    model = Model()
    shared = list(model.encoder.parameters())
    balancer = FixedWeights(TASKS, shared=model.encoder)
    z, losses = model(data())
    balancer.backward(losses)
    jacobian = torch.stack([torch.cat([g.reshape(-1) for g in row]) for row in per_task_grads(model, shared)])
    direction, weights = balancer.combine(jacobian, torch.ones(3))
    assert torch.allclose(direction, WEIGHTS.float() @ jacobian)
    assert int(balancer.step_count) == 2 and balancer.seen[1].step == 1
    with pytest.raises(BalancerError, match="K×d"):
        balancer.combine(jacobian[:2])


class DoublingReducer:
    """Fake all-reduce over two identical processes: every quantity doubles; records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def sum_jacobian(self, jacobian: Tensor) -> Tensor:
        self.calls.append(("jacobian", tuple(jacobian.shape)))
        return 2 * jacobian

    def sum_gramian(self, gramian: Tensor) -> Tensor:
        self.calls.append(("gramian", tuple(gramian.shape)))
        return 2 * gramian

    def sum_losses(self, values: Tensor) -> Tensor:
        self.calls.append(("losses", tuple(values.shape)))
        return 2 * values


def source_jacobian(model: Model, source: str) -> Tensor:
    z, losses = model(data())
    if source == "features":
        return torch.stack(
            [torch.autograd.grad(losses[t], z, retain_graph=True)[0].reshape(-1) for t in TASKS]
        ).double()
    params = list(model.encoder[2].parameters()) if source == "last_layer" else list(model.encoder.parameters())
    return torch.stack([torch.cat([g.reshape(-1) for g in row]) for row in per_task_grads(model, params)]).double()


@pytest.mark.parametrize("source", ["params", "last_layer", "features"])
def test_reducer_is_applied_where_the_engine_docstring_says(source: str) -> None:
    model = Model()
    shared = list(model.encoder.parameters())
    jacobian = source_jacobian(model, source)
    local_update = combined(per_task_grads(model, shared), WEIGHTS)
    reducer = DoublingReducer()
    balancer = FixedWeights(TASKS, shared=model.encoder, source=source)
    z, losses = model(data())
    step = balancer.backward(losses, features=z, reducer=reducer)
    d = jacobian.shape[1]
    if source == "features":
        # the global Gramian is the sum of the local ones; J and the update stay local
        assert reducer.calls == [("losses", (3,)), ("gramian", (3, 3))]
        expected_gramian, factor = 2 * jacobian @ jacobian.T, 1.0
    else:
        # J is summed right after it is formed, so the method sees (2J)(2J)ᵀ; params writes d = (2J)ᵀw itself
        assert reducer.calls == [("losses", (3,)), ("jacobian", (3, d))]
        expected_gramian, factor = 4 * jacobian @ jacobian.T, 2.0 if source == "params" else 1.0
    assert torch.allclose(balancer.seen[0].gramian, expected_gramian, rtol=1e-5)
    assert torch.equal(
        balancer.seen[0].losses, 2 * torch.tensor([losses[t].item() for t in TASKS], dtype=torch.float64)
    )
    assert step.losses == pytest.approx({t: 2 * losses[t].item() for t in TASKS})
    for p, g in zip(shared, local_update):
        assert torch.allclose(p.grad, factor * g, atol=1e-6)
    for i, head in enumerate(model.heads.values()):  # the heads are local: the caller all-reduces them
        raw = per_task_grads(model, [head.weight])[i][0]
        assert torch.allclose(head.weight.grad, float(WEIGHTS[i]) * raw, atol=1e-6)


def test_reducer_sums_the_losses_of_a_loss_only_method_and_a_nan_anywhere_raises() -> None:
    model = Model()
    reducer = DoublingReducer()
    z, losses = model(data())
    step = create("uniform", tasks=TASKS).backward(losses, reducer=reducer)
    assert reducer.calls == [("losses", (3,))]
    assert step.losses == pytest.approx({t: 2 * losses[t].item() for t in TASKS})

    class NaNElsewhere(DoublingReducer):
        def sum_losses(self, values: Tensor) -> Tensor:
            return values + torch.tensor([0.0, float("nan"), 0.0], dtype=torch.float64)

    model.zero_grad(set_to_none=True)
    z, losses = model(data())
    with pytest.raises(NonFiniteLossError, match="'b'"):
        FixedWeights(TASKS, shared=model.encoder).backward(losses, reducer=NaNElsewhere())
    assert all(g is None for g in all_grads(model))


def test_an_expanded_gradient_is_not_written_in_place() -> None:
    """∇ of ``x.sum()`` comes back from autograd as an expanded (stride 0) tensor; combining must not write into it."""
    x = torch.randn(3, 2, requires_grad=True)
    balancer = FixedWeights(TASKS, shared=[x])
    losses = {"a": x.sum(), "b": (x * 2).sum(), "c": x.pow(2).sum()}
    balancer.backward(losses)
    expected = WEIGHTS[0] + 2 * WEIGHTS[1] + WEIGHTS[2] * 2 * x.detach().double()
    assert torch.allclose(x.grad.double(), expected, atol=1e-6)


def test_a_non_finite_task_gradient_stops_before_the_method_and_writes_nothing() -> None:
    from taskbalance.balancers import NonFiniteGradientError

    w = torch.zeros(3, requires_grad=True)
    balancer = FixedWeights(TASKS, shared=[w])
    losses = {"a": w.sum() + 1, "b": torch.sqrt(w).sum(), "c": (2 * w).sum()}  # ∇ √w at 0 is inf; the loss is 0
    with pytest.raises(NonFiniteGradientError, match=r"\['b'\]"):
        balancer.backward(losses)
    assert w.grad is None and int(balancer.step_count) == 0 and balancer.seen == []


@pytest.mark.parametrize("give_features", [True, False])
def test_last_layer_with_features_traverses_each_head_once(give_features: bool) -> None:
    model = Model()
    expected = combined(every_task_grad(model), WEIGHTS)
    calls: list[int] = []
    for head in model.heads.values():
        head.register_full_backward_hook(lambda module, grad_in, grad_out: calls.append(1))
    balancer = FixedWeights(TASKS, shared=model.encoder, source="last_layer")
    z, losses = model(data())
    balancer.backward(losses, features=z if give_features else None)
    # with the features, the per-task calls give the heads' gradients and the encoder gets dz = Σ w_i ∂L_i/∂z
    assert len(calls) == (3 if give_features else 6)
    for p, g in zip(model.parameters(), expected):
        assert torch.allclose(p.grad, g, atol=1e-6)


def test_last_layer_with_features_that_a_head_bypasses_falls_back_to_one_reweighted_backward() -> None:
    model = Model(leak=True)
    expected = combined(every_task_grad(model), WEIGHTS)
    balancer = FixedWeights(TASKS, shared=model.encoder, source="last_layer")
    z, losses = model(data())
    balancer.backward(losses, features=z)
    for p, g in zip(model.parameters(), expected):
        assert torch.allclose(p.grad, g, atol=1e-6)


# ----------------------------------------------------------------------------- last layer through its output
@pytest.mark.parametrize(
    "layer",
    [nn.Linear(6, 40), nn.Conv2d(3, 16, 3, padding=1, stride=2), nn.Conv2d(3, 16, 3, dilation=2, bias=False)],
    ids=["linear", "conv-stride", "conv-dilation-no-bias"],
)
def test_layer_gramian_equals_the_gramian_of_the_weight_gradients(layer: nn.Module) -> None:
    from taskbalance.balancers.capture import LayerCapture
    from taskbalance.balancers.gramian import layer_gramian

    torch.manual_seed(0)
    capture = LayerCapture(layer)
    x = torch.randn(2, 5, 6) if isinstance(layer, nn.Linear) else torch.randn(2, 3, 7, 7)
    y = layer(x)
    taken = capture.take()
    assert taken is not None and taken[1] is y
    deltas = [torch.randn_like(y) for _ in range(3)]
    params = [p for p in layer.parameters()]
    rows = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, d, retain_graph=True)]).double()
        for d in deltas
    ]
    expected = torch.stack(rows) @ torch.stack(rows).T
    assert torch.allclose(layer_gramian(layer, taken[0], deltas), expected, rtol=1e-5)


class ConvModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(
            nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Tanh()
        )
        self.heads = nn.ModuleDict({t: nn.Conv2d(8, 1, 1) for t in TASKS})

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.encoder(x)
        return z, {t: (head(z) - i).pow(2).mean() for i, (t, head) in enumerate(self.heads.items())}


@pytest.mark.parametrize("give_features", [True, False])
def test_last_layer_source_takes_the_gramian_from_the_layer_output(give_features: bool) -> None:
    model = ConvModel()
    x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    last = model.encoder[2]
    _, losses = model(x)
    rows = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], list(last.parameters()), retain_graph=True)])
        for t in TASKS
    ]
    expected_gramian = torch.stack(rows).double() @ torch.stack(rows).double().T
    grads = [[torch.zeros_like(p) if g is None else g for p, g in zip(model.parameters(), torch.autograd.grad(
        losses[t], list(model.parameters()), retain_graph=True, allow_unused=True))] for t in TASKS]
    expected = combined(grads, WEIGHTS)
    weight_grads: list[int] = []
    last.weight.register_hook(lambda g: weight_grads.append(1))
    balancer = FixedWeights(TASKS, shared=model.encoder, source="last_layer")
    assert balancer.last_layer_name == "2"
    z, losses = model(x)
    balancer.backward(losses, features=z if give_features else None)
    assert torch.allclose(balancer.seen[0].gramian, expected_gramian, rtol=1e-5)
    assert len(weight_grads) == 1  # only the update's: no per-task weight gradient was formed
    for p, g in zip(model.parameters(), expected):
        assert torch.allclose(p.grad, g, atol=1e-6)


def test_a_layer_run_twice_in_one_forward_falls_back_to_weight_gradients() -> None:
    model = ConvModel()
    balancer = FixedWeights(TASKS, shared=model.encoder, source="last_layer")
    x = torch.randn(2, 2, 6, 6)
    model.encoder[2](model.encoder[0](x))  # an extra call with autograd on: the capture is ambiguous
    z, losses = model(x)
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], list(model.encoder[2].parameters()),
                                                                  retain_graph=True)]) for t in TASKS]
    balancer.backward(losses, features=z)
    expected = torch.stack(rows).double() @ torch.stack(rows).double().T
    assert torch.allclose(balancer.seen[0].gramian, expected, rtol=1e-5)


def test_a_conv_subclass_that_transforms_its_weight_uses_the_weight_gradients() -> None:
    from taskbalance.balancers.capture import LayerCapture

    class Standardized(nn.Conv2d):
        def forward(self, x: Tensor) -> Tensor:
            w = (self.weight - self.weight.mean()) / (self.weight.std() + 1e-5)
            return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)

    assert LayerCapture(Standardized(2, 2, 3)).handle is None
    assert LayerCapture(nn.Conv2d(2, 2, 3)).handle is not None
