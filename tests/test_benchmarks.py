"""The benchmarks measure what they claim (issue 18 item 5): step_time's rows train (non-zero last-layer gradients,
checked before timing), its floor row is T real backward passes, and data_throughput counts worker processes' CPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import timm
import torch
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


step_time = load("step_time")


def one_step(label: str, model: nn.Module) -> step_time.Row:
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        targets = [torch.randn(p.shape) for p in model(images)[1]]
    row = step_time.build_rows([label], model, ("t0", "t1"), torch.device("cpu"))[0]
    step_time.run_step(row, images, targets, torch.device("cpu"))
    return row


def test_every_row_set_starts_with_uniform_and_the_measured_floor() -> None:
    assert step_time.parse_rows("avgnorm,mgda:params")[:2] == ["uniform", "floor"]
    assert step_time.parse_rows("floor,uniform,avgnorm") == ["uniform", "floor", "avgnorm"]


def test_avgnorm_trains_the_last_layer_of_the_benchmark_model_and_a_zero_init_model_is_refused() -> None:
    torch.manual_seed(0)
    model = step_time.TimmDense("resnet18", 2)
    assert step_time.last_shared_layer(model)[0] == "layer4.1.conv2"
    row = one_step("avgnorm", model)
    step_time.check_gradients(row)  # passes: non-zero gradient on layer4.1.conv2
    assert row.model.encoder.layer4[1].conv2.weight.grad.abs().sum() > 0
    # timm's default (zero-initialised last BatchNorm scale of every block): the check stops the benchmark
    model.encoder = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(4,))
    with pytest.raises(SystemExit, match="avgnorm: the last shared layer layer4.1.conv2 got an all-zero gradient"):
        step_time.check_gradients(one_step("avgnorm", model))


def test_the_floor_row_is_one_backward_pass_per_task() -> None:
    torch.manual_seed(0)
    model = step_time.TimmDense("resnet18", 2)
    images = torch.randn(2, 3, 64, 64)
    _, predictions = model(images)
    losses = {f"t{i}": p.square().mean() for i, p in enumerate(predictions)}
    weight = model.encoder.layer4[1].conv2.weight
    expected = sum(torch.autograd.grad(loss, weight, retain_graph=True)[0] for loss in losses.values())
    step_time.floor_backward(losses)
    torch.testing.assert_close(weight.grad, expected)


def test_data_throughput_counts_the_cpu_time_of_exited_child_processes() -> None:
    cpu_seconds = load("data_throughput").cpu_seconds
    before = cpu_seconds()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                    "while time.process_time() < end: pass"], check=True, timeout=120)
    assert cpu_seconds() - before >= 0.3
