"""A balancer's forward hook and its capture of the last layer's output live no longer than needed (issue 18,
item 2): removed by ``close()``, by ``with``, and when the balancer is garbage-collected; nothing captured by an
evaluation (``no_grad`` or eval mode); a capture dropped after its step."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import Tensor, nn

from taskbalance.balancers import create

TASKS = ("a", "b")


def model() -> tuple[nn.Module, nn.ModuleDict]:
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8))
    return encoder, nn.ModuleDict({t: nn.Linear(8, 1) for t in TASKS})


def losses(encoder: nn.Module, heads: nn.ModuleDict) -> dict[str, Tensor]:
    z = encoder(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)))
    return {t: heads[t](z).pow(2).mean() for t in TASKS}


def last(encoder: nn.Module) -> nn.Module:
    return encoder[2]


@pytest.mark.parametrize("method", ["avgnorm", "gradnorm", "nashmtl"])
def test_balancers_created_and_deleted_leave_no_hook(method: str) -> None:
    encoder, _ = model()
    balancers = [create(method, tasks=TASKS, shared=encoder, source="last_layer") for _ in range(3)]
    assert len(last(encoder)._forward_hooks) == 3
    del balancers
    gc.collect()
    assert len(last(encoder)._forward_hooks) == 0


def test_close_and_with_remove_the_hook_and_the_balancer_still_works() -> None:
    encoder, heads = model()
    balancer = create("avgnorm", tasks=TASKS, shared=encoder)
    assert len(last(encoder)._forward_hooks) == 1
    balancer.close()
    balancer.close()  # idempotent
    assert len(last(encoder)._forward_hooks) == 0
    step = balancer.backward(losses(encoder, heads))  # the exact path
    assert set(step.grad_norms) == set(TASKS)
    with create("avgnorm", tasks=TASKS, shared=encoder) as inside:
        assert len(last(encoder)._forward_hooks) == 1
        inside.backward(losses(encoder, heads))
    assert len(last(encoder)._forward_hooks) == 0


def test_no_graph_is_retained_after_deleting_a_balancer() -> None:
    encoder, heads = model()
    balancer = create("avgnorm", tasks=TASKS, shared=encoder)
    losses(encoder, heads)  # a forward that no step consumes
    capture = balancer.last_layer_capture
    assert capture is not None and capture.latest is not None
    output = weakref.ref(capture.latest[1])
    del capture, balancer
    gc.collect()
    assert output() is None
    assert len(last(encoder)._forward_hooks) == 0


def test_a_capture_is_dropped_after_its_step() -> None:
    encoder, heads = model()
    balancer = create("avgnorm", tasks=TASKS, shared=encoder)
    capture = balancer.last_layer_capture
    assert capture is not None
    step_losses = losses(encoder, heads)
    assert capture.latest is not None
    output = weakref.ref(capture.latest[1])
    balancer.backward(step_losses)
    assert capture.latest is None
    del step_losses
    gc.collect()
    assert output() is None


def test_an_evaluation_captures_nothing() -> None:
    encoder, heads = model()
    balancer = create("avgnorm", tasks=TASKS, shared=encoder)
    capture = balancer.last_layer_capture
    assert capture is not None
    with torch.no_grad():
        losses(encoder, heads)
    assert capture.latest is None and capture.count == 0
    encoder.eval()
    losses(encoder, heads)  # grad enabled, eval mode
    assert capture.latest is None and capture.count == 0
    encoder.train()
    losses(encoder, heads)
    assert capture.latest is not None and capture.count == 1


def test_a_second_forward_before_the_step_keeps_nothing() -> None:
    encoder, heads = model()
    balancer = create("avgnorm", tasks=TASKS, shared=encoder)
    capture = balancer.last_layer_capture
    assert capture is not None
    losses(encoder, heads)
    step_losses = losses(encoder, heads)
    assert capture.latest is None and capture.count == 2
    expected = [float(torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        step_losses[t], list(last(encoder).parameters()), retain_graph=True)]).norm()) for t in TASKS]
    step = balancer.backward(step_losses)  # the exact path
    assert [step.grad_norms[t] for t in TASKS] == pytest.approx(expected, rel=1e-5)
    assert capture.count == 0
