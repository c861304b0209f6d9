"""The step driver: its order of operations, divergence before and after the update, the documented user loop, and
the protocol runner's wiring of methods with state."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from taskbalance.balancers import create
from taskbalance.balancers.driver import Forward, StepDriver, StepOptions, TrainingDiverged
from taskbalance.protocols import protocol_preset, run_protocol

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    return next(block for block in blocks if "StepDriver" in block)


def test_the_documented_user_loop_runs_and_famo_learns():
    namespace: dict = {}
    exec(compile(_example(), str(README), "exec"), namespace)
    driver, balancer = namespace["driver"], namespace["balancer"]
    assert driver.steps_done == 12 and int(balancer.step_count) == 12
    assert float(balancer.logits.abs().max()) > 0  # post_step ran after every step
    assert set(namespace["step"].weights) == {"seg", "depth"}


class Recorder:
    """A method's hooks that log what the driver calls, in order."""

    def __init__(self, log: list[str], needs_post_step_losses: bool) -> None:
        self.log = log
        self.needs_post_step_losses = needs_post_step_losses

    def post_step(self, losses) -> None:
        self.log.append(f"post_step {float(losses['a']):g}")

    def epoch_end(self) -> None:
        self.log.append("epoch_end")


def test_order_of_a_step_and_of_an_epoch_end():
    log: list[str] = []
    weight = nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    def forward() -> dict[str, torch.Tensor]:
        log.append("forward" if torch.is_grad_enabled() else "forward under no_grad")
        return {"a": (weight**2).sum() / 2}

    def backward(current: Forward, diagnose) -> str:
        log.append(f"backward grad={weight.grad}")  # zero_grad(set_to_none) ran before
        current.losses["a"].backward()  # ∇ = weight = (3, 4), norm 5
        return "result"

    options = StepOptions(scheduler=scheduler, schedule_per="epoch", clip=[weight], max_norm=1.0,
                          gradient_hook=lambda: log.append(f"hook grad={weight.grad.tolist()}"))
    driver = StepDriver(Recorder(log, needs_post_step_losses=True), optimizer, backward, options)
    weight.grad = torch.ones(2)
    assert driver.step(forward) == "result"
    driver.epoch_end()
    # clipped to norm 1 after the hook: (0.6, 0.8); SGD at lr 1 → (2.4, 3.2); the loss after it is (2.4² + 3.2²)/2 = 8
    assert log == ["forward", "backward grad=None", "hook grad=[3.0, 4.0]", "forward under no_grad", "post_step 8",
                   "epoch_end"]
    torch.testing.assert_close(weight.detach(), torch.tensor([2.4, 3.2]))
    assert optimizer.param_groups[0]["lr"] == 0.5 and driver.steps_done == 1


def test_methods_without_post_step_losses_get_one_forward():
    log: list[str] = []
    weight = nn.Parameter(torch.ones(()))
    driver = StepDriver(Recorder(log, needs_post_step_losses=False), torch.optim.SGD([weight], lr=0.1),
                        lambda current, diagnose: current.losses["a"].backward())
    driver.step(lambda: log.append("forward") or {"a": weight * 2})
    assert log == ["forward"]
    torch.testing.assert_close(weight.detach(), torch.tensor(0.8))


def _famo_driver(steps_done: int = 0) -> tuple[StepDriver, nn.Linear]:
    model = nn.Linear(2, 2)
    balancer = create("famo", tasks=["a", "b"])
    return StepDriver.for_balancer(balancer, torch.optim.SGD(model.parameters(), lr=0.1), steps_done=steps_done), model


def test_a_non_finite_loss_before_the_update_names_task_and_step_and_changes_nothing():
    driver, model = _famo_driver(steps_done=6)
    before = model.weight.detach().clone()

    def forward() -> dict[str, torch.Tensor]:
        out = model(torch.ones(1, 2))[0]
        return {"a": out[0] ** 2, "b": out[1] * math.inf}

    with pytest.raises(TrainingDiverged, match=r"^the loss of task 'b' is (-)?inf at step 7; no update was applied$"):
        driver.step(forward)
    assert torch.equal(model.weight, before) and driver.steps_done == 6


def test_a_non_finite_loss_after_the_update_is_the_same_one_line_error():
    driver, model = _famo_driver()
    calls = []

    def forward() -> dict[str, torch.Tensor]:
        calls.append(torch.is_grad_enabled())
        out = model(torch.ones(1, 2))[0]
        scale = 1.0 if len(calls) < 4 else math.nan  # the re-evaluation after step 2 diverges
        return {"a": out[0] ** 2 + 1, "b": (out[1] ** 2 + 1) * scale}

    driver.step(forward)
    with pytest.raises(TrainingDiverged) as caught:
        driver.step(forward)
    assert str(caught.value) == ("the loss of task 'b' after the update of step 2 is nan (the method's post_step); "
                                 "the update was applied")
    assert calls == [True, False, True, False]


def test_protocol_runner_adapts_epoch_methods_and_steps_method_parameters():
    preset = protocol_preset("multimnist", cpu=True)  # 32 training items, one batch per epoch
    preset = dataclasses.replace(preset, schedule=dataclasses.replace(preset.schedule, epochs=3))
    dwa = run_protocol(preset, method="dwa").result.mean_weights
    # epochs 0 and 1 weigh 1; epoch 2 weighs K softmax(r/T) (sum K = 2): the mean moves off 1, the sum stays 2
    assert abs(dwa["left"] - 1) > 1e-4 and dwa["left"] + dwa["right"] == pytest.approx(2)
    uw = run_protocol(preset, method="uw").result.mean_weights
    untrained = 0.5 * math.exp(0.5)  # ½e^{-s} at the initial s = −0.5
    assert all(abs(w - untrained) > 1e-4 for w in uw.values())


@pytest.mark.parametrize(("options", "problem"), [
    ({"max_norm": -1.0}, "max_norm must be >= 0"),
    ({"max_norm": 1.0}, r"clip=\.\.\.\); got max_norm=1.0 and 0 parameter"),
    ({"schedule_per": "batch"}, "schedule_per must be 'step' or 'epoch'"),
])
def test_step_options_refuse_what_cannot_work(options, problem):
    with pytest.raises(ValueError, match=problem):
        StepOptions(**options)
