"""Saliency maxF (pooled β²=0.3 as ATRC, and per-image β²=1 as MTLP) against hand-computed values."""

import math

import pytest
import torch

from taskbalance.tasks import EmptyMeterError, build_task


def logit(p: list[float]) -> torch.Tensor:
    t = torch.tensor(p, dtype=torch.float64)
    return (t / (1 - t)).log().view(1, 1, 1, -1)


def label(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)


PROBS = [0.92, 0.72, 0.61, 0.23, 0.12]
LABEL = [1.0, 0.0, 1.0, 0.0, 1.0]


def f_beta(p: float, r: float, b2: float) -> float:
    return (1 + b2) * p * r / (b2 * p + r)


def maxf(definition: str, *batches) -> float:
    meter = build_task("sal", maxf=definition).meter()
    for pred, target in batches:
        meter.update(pred, target)
    return meter.compute()["maxF"]


def test_pooled_beta_03():
    # thresholds 0.05…0.95: {≤0.10: P 3/5 R 1}, {0.15,0.20: P 1/2 R 2/3}, {0.25…0.60: P=R=2/3},
    # {0.65,0.70: P 1/2 R 1/3}, {0.75…0.90: P 1 R 1/3}, {0.95: nothing predicted → 0}
    candidates = [f_beta(0.6, 1, 0.3), f_beta(0.5, 2 / 3, 0.3), 2 / 3, f_beta(0.5, 1 / 3, 0.3), f_beta(1, 1 / 3, 0.3)]
    assert maxf("pooled", (logit(PROBS), label(LABEL))) == pytest.approx(100 * max(candidates))
    assert max(candidates) == f_beta(1, 1 / 3, 0.3)  # the β²=0.3 choice favours precision


def test_per_image_beta_1_averages_precision_and_recall_over_images():
    assert maxf("per_image", (logit(PROBS), label(LABEL))) == pytest.approx(100 * 2 / 3)
    # second image: one positive pixel at 0.92, P = R = 1 at every threshold ≤ 0.9.
    # t ∈ 0.25…0.6: P̄ = R̄ = (2/3 + 1)/2 = 5/6; t ∈ 0.75…0.9: P̄ = 1, R̄ = 2/3 → F = 0.8
    both = maxf("per_image", (logit(PROBS), label(LABEL)), (logit([0.92]), label([1.0])))
    assert both == pytest.approx(100 * 5 / 6)


def test_ignored_pixels_and_all_ignored_images_change_nothing():
    padded = maxf("pooled", (logit(PROBS + [0.99]), label(LABEL + [255.0])), (logit([0.99]), label([255.0])))
    assert padded == pytest.approx(maxf("pooled", (logit(PROBS), label(LABEL))))
    with pytest.raises(EmptyMeterError, match="task 'sal'"):
        maxf("pooled", (logit([0.5]), label([255.0])))


def test_perfect_and_constant_predictions():
    assert maxf("pooled", (logit([0.99, 0.01, 0.99]), label([1.0, 0.0, 1.0]))) == pytest.approx(100.0)
    # constant 0.5: thresholds ≤ 0.5 predict everything (P 1/2, R 1), higher ones nothing
    constant = maxf("pooled", (torch.zeros(1, 1, 1, 4, dtype=torch.float64), label([1.0, 0.0, 1.0, 0.0])))
    assert constant == pytest.approx(100 * f_beta(0.5, 1, 0.3))
    assert not math.isnan(constant)
