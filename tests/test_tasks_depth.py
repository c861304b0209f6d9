"""Pooled depth metrics against hand-computed values."""

import math

import pytest
import torch

from taskbalance.tasks import EmptyMeterError, build_task

PRED = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
TARGET = torch.tensor([[[[1.0, 0.0], [2.0, 8.0]]]])  # 0 = invalid


def test_hand_computed_case():
    meter = build_task("depth").meter()
    meter.update(PRED, TARGET)
    out = meter.compute()
    assert out["rmse"] == pytest.approx(math.sqrt((0 + 1 + 16) / 3))
    assert out["log_rmse"] == pytest.approx(math.sqrt((math.log(1.5) ** 2 + math.log(2) ** 2) / 3))
    assert out["abs_rel"] == pytest.approx((0 + 1 / 2 + 4 / 8) / 3)


def test_rmse_is_pooled_over_pixels_not_averaged_per_image():
    meter = build_task("depth").meter()
    meter.update(torch.tensor([[[[1.0, 1.0]]]]), torch.tensor([[[[1.0, 1.0]]]]))  # errors 0, 0
    meter.update(torch.tensor([[[[4.0]]]]), torch.tensor([[[[1.0]]]]))  # error 3
    assert meter.compute()["rmse"] == pytest.approx(math.sqrt(9 / 3))  # per-image mean would be 1.5


def test_perfect_constant_and_all_invalid():
    meter = build_task("depth").meter()
    meter.update(TARGET.clone(), TARGET)
    assert meter.compute() == {"rmse": 0.0, "log_rmse": 0.0, "abs_rel": 0.0}
    meter.reset()
    meter.update(torch.full_like(PRED, 2.0), TARGET)  # errors 1, 0, 6 on valid pixels
    meter.update(PRED, torch.zeros_like(TARGET))  # all invalid: contributes nothing
    assert meter.compute()["rmse"] == pytest.approx(math.sqrt(37 / 3))
    empty = build_task("depth").meter()
    empty.update(PRED, torch.zeros_like(TARGET))
    with pytest.raises(EmptyMeterError, match="task 'depth'"):
        empty.compute()


def test_negative_predictions_are_clamped_before_the_log():
    meter = build_task("depth").meter()
    meter.update(torch.tensor([[[[-1.0]]]]), torch.tensor([[[[2.0]]]]))
    out = meter.compute()
    assert out["rmse"] == pytest.approx(2.0)
    assert out["log_rmse"] == pytest.approx(math.log(2.0) - math.log(1e-9))
