"""Last-layer gradients in user models that modify the last shared layer's output in place (issue 18, item 1).

The fast ``last_layer`` path takes per-task gradients on the layer's output and the Gramian from its input
(``gramian.layer_gramian``, called by the engine). After ``ReLU(inplace=True)`` or ``out += residual`` the captured
output tensor holds the modified values, and a gradient on it is not the gradient on the layer's output. The engine
must then take the exact path: the reported gradient norms equal autograd's on the layer's parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torchvision.models.vgg import make_layers

from taskbalance.balancers import create, engine
from taskbalance.balancers.capture import LayerCapture
from taskbalance.balancers.gramian import layer_gramian

TASKS = ("seg", "depth", "normal")


class Residual(nn.Module):
    """``out = conv2(relu(conv1(x))); out += h`` (the residual added in place to the last conv's output)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv1(x))
        out = self.conv2(h)
        out += h
        return out


def conv_then(activation: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), activation)


ENCODERS: dict[str, Callable[[], nn.Module]] = {
    "relu-inplace": lambda: conv_then(nn.ReLU(inplace=True)),
    "leaky-relu-inplace": lambda: conv_then(nn.LeakyReLU(0.1, inplace=True)),
    "residual-add-inplace": Residual,
    # torchvision's own VGG feature builder, cut small: the last conv is followed by ReLU(inplace=True)
    "vgg-features": lambda: make_layers([8, "M", 16, "M", 32, 32]),
}
INPUT_SIZE = {"relu-inplace": 8, "leaky-relu-inplace": 8, "residual-add-inplace": 8, "vgg-features": 16}


class MultiTask(nn.Module):
    def __init__(self, encoder: nn.Module, channels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict({t: nn.Conv2d(channels, 1, 1) for t in TASKS})

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.encoder(x)
        return z, {t: (head(z) - i).pow(2).mean() for i, (t, head) in enumerate(self.heads.items())}


def build(name: str, dtype: torch.dtype) -> tuple[MultiTask, Tensor]:
    torch.manual_seed(0)
    encoder = ENCODERS[name]()
    channels = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)][-1].out_channels
    model = MultiTask(encoder, channels).to(dtype)
    size = INPUT_SIZE[name]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=dtype)
    return model, x


def autograd_norms(model: MultiTask, x: Tensor, last: nn.Module) -> list[float]:
    _, losses = model(x)
    params = list(last.parameters())
    return [float(torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], params, retain_graph=True)])
                  .double().norm()) for t in TASKS]


def spy_layer_gramian(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = engine.layer_gramian

    def spy(*args: object) -> Tensor:
        calls.append(1)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "layer_gramian", spy)
    return calls


TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("give_features", [True, False], ids=["features", "no-features"])
def test_avgnorm_grad_norms_equal_autograds_after_an_in_place_op(
    name: str, dtype: torch.dtype, give_features: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, x = build(name, dtype)
    last = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)][-1]
    expected = autograd_norms(model, x, last)  # before the balancer: its hook sees only the step's forward
    balancer = create("avgnorm", tasks=TASKS, shared=model.encoder)
    # the layer qualifies for the fast path: only the in-place op can keep it from being used
    assert model.encoder.get_submodule(balancer.last_layer_name) is last
    assert balancer.last_layer_capture is not None and balancer.last_layer_capture.handle is not None
    calls = spy_layer_gramian(monkeypatch)
    z, losses = model(x)
    step = balancer.backward(losses, features=z if give_features else None)
    assert calls == []  # the modified output was detected: exact path
    norms = [step.grad_norms[t] for t in TASKS]
    assert norms == pytest.approx(expected, rel=TOLERANCE[dtype])
    # the weights are AvgNorm's rule on those norms: w_i = ‖Σ g_j‖ / ‖g_i‖
    total = float(step.gramian.sum().sqrt())
    assert [step.weights[t] for t in TASKS] == pytest.approx([total / n for n in expected], rel=10 * TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_the_same_model_without_the_in_place_op_keeps_the_fast_path(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = MultiTask(conv_then(nn.ReLU(inplace=False)), 16).to(dtype)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)
    expected = autograd_norms(model, x, model.encoder[2])
    balancer = create("avgnorm", tasks=TASKS, shared=model.encoder)
    calls = spy_layer_gramian(monkeypatch)
    z, losses = model(x)
    step = balancer.backward(losses, features=z)
    assert calls == [1]
    assert [step.grad_norms[t] for t in TASKS] == pytest.approx(expected, rel=TOLERANCE[dtype])


def test_the_output_gradient_after_an_in_place_relu_is_not_the_layers() -> None:
    # why the check is needed: on the modified tensor the fast path's Gramian differs from the exact one
    model, x = build("relu-inplace", torch.float64)
    last = model.encoder[2]
    exact = autograd_norms(model, x, last)
    capture = LayerCapture(last)
    _, losses = model(x)
    layer_input, output, _, _ = capture.latest  # type: ignore[misc]
    deltas = [torch.autograd.grad(losses[t], output, retain_graph=True)[0] for t in TASKS]
    stale = layer_gramian(last, layer_input, deltas).diagonal().sqrt().tolist()
    assert capture.take() is None  # the version counter saw the in-place ReLU
    assert max(abs(s / e - 1) for s, e in zip(stale, exact)) > 1e-3
    capture.close()


def test_an_input_modified_in_place_after_the_layer_is_not_used() -> None:
    layer = nn.Linear(4, 3)
    capture = LayerCapture(layer)
    x = torch.randn(5, 4)
    layer(x)
    x.mul_(2)  # the kernel would read the doubled values
    assert capture.take() is None
    layer(x)
    taken = capture.take()
    assert taken is not None and torch.equal(taken[0], x)
    capture.close()
