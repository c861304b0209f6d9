"""Angular-error metrics against hand-computed values."""

import math

import pytest
import torch

from taskbalance.tasks import EmptyMeterError, build_task
from taskbalance.tasks.metrics import angular_error_degrees

UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def tilted(degrees: list[float], scale: float = 3.0) -> torch.Tensor:
    """1×3×1×N predictions at the given angles from UP (scaled: the metric must normalise)."""
    rad = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64))
    return scale * torch.stack([torch.zeros_like(rad), rad.sin(), rad.cos()]).view(1, 3, 1, -1)


def labels(n: int, invalid: int = 0) -> torch.Tensor:
    out = UP.view(1, 3, 1, 1).repeat(1, 1, 1, n + invalid).clone()
    out[..., n:] = 0.0
    return out


def test_hand_computed_case_with_an_invalid_pixel():
    angles = [0.0, 10.0, 20.0, 45.0, 90.0]
    meter = build_task("normals").meter()
    meter.update(tilted(angles + [60.0]), labels(5, invalid=1))
    out = meter.compute()
    assert out["mean"] == pytest.approx(sum(angles) / 5)
    assert out["median"] == pytest.approx(20.0, abs=1e-3)
    assert out["rmse"] == pytest.approx(math.sqrt(sum(a * a for a in angles) / 5))
    assert out["within_11.25"] == pytest.approx(40.0)
    assert out["within_22.5"] == pytest.approx(60.0)
    assert out["within_30"] == pytest.approx(60.0)


def test_median_of_even_count_is_mean_of_middle_pair_pooled_over_batches():
    meter = build_task("normals").meter()
    meter.update(tilted([0.0, 10.0, 20.0]), labels(3))
    meter.update(tilted([40.0, 50.0, 90.0]), labels(3))
    assert meter.compute()["median"] == pytest.approx(30.0, abs=1e-3)


def test_perfect_constant_and_all_invalid():
    meter = build_task("normals").meter()
    meter.update(labels(4), labels(4))
    out = meter.compute()
    assert out["mean"] == pytest.approx(0.0, abs=1e-6) and out["within_11.25"] == 100.0
    constant = build_task("normals").meter()
    constant.update(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).repeat(1, 1, 1, 4), labels(4))
    assert constant.compute()["mean"] == pytest.approx(90.0)
    empty = build_task("normals").meter()
    empty.update(tilted([5.0]), torch.zeros(1, 3, 1, 1))
    with pytest.raises(EmptyMeterError, match="task 'normals'"):
        empty.compute()


def test_atan2_form_is_accurate_for_tiny_and_opposite_angles():
    tiny = angular_error_degrees(tilted([1e-5]), labels(1))
    assert tiny.item() == pytest.approx(1e-5, rel=1e-6)  # acos(cos θ) would return 0 here
    opposite = angular_error_degrees(-labels(1), labels(1))
    assert opposite.item() == pytest.approx(180.0)


def test_png_quantisation_option_rounds_predictions_to_uint8_codes():
    # code = round((n + 1)·255/2): n_x = 0 → 127.5 → 128; n_y = sin 1° → 129.72 → 130; n_z = cos 1° → 254.96 → 255
    meter = build_task("normals", quantize_png=True).meter()
    meter.update(tilted([1.0], scale=1.0), labels(1))
    x, y, z = (code * 2 / 255 - 1 for code in (128, 130, 255))
    assert meter.compute()["mean"] == pytest.approx(math.degrees(math.atan2(math.hypot(x, y), z)), rel=1e-6)
