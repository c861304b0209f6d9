"""Optimizer / schedule construction (Table IX) and the single-process path of the distributed helpers."""

import pytest
import torch

from taskbalance.training.config import OptimConfig
from taskbalance.training.distributed import DistInfo, average_gradients, init_from_env
from taskbalance.training.optim import build_optimizer, build_scheduler, lr_factor


@pytest.mark.parametrize(
    "name, cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_optimizer_kind_and_group_overrides(name, cls):
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    cfg = OptimConfig(optimizer=name, lr=0.1, weight_decay=0.01, iterations=10)
    optimizer = build_optimizer([{"params": [a]}, {"params": [b], "lr": 0.5, "weight_decay": 0.0}, {"params": []}], cfg)
    assert isinstance(optimizer, cls) and len(optimizer.param_groups) == 2
    assert optimizer.param_groups[0]["weight_decay"] == 0.01 and optimizer.param_groups[1]["lr"] == 0.5


def test_poly_schedule_follows_the_formula():
    cfg = OptimConfig(lr=1.0, iterations=10, poly_power=0.9)
    assert lr_factor(0, 10, cfg) == 1.0 and lr_factor(10, 10, cfg) == 0.0
    assert lr_factor(4, 10, cfg) == pytest.approx(0.6**0.9)
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([{"params": [p]}], cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=10)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.6**0.9)
    assert lr_factor(5, 10, OptimConfig(schedule="constant", iterations=10)) == 1.0


def test_single_process_distributed_helpers(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_from_env()
    assert info == DistInfo() and info.is_main and not info.enabled
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    average_gradients([p], info)
    assert torch.equal(p.grad, torch.full((2,), 3.0))
