"""Task losses against hand-computed values."""

import math

import pytest
import torch

from taskbalance.tasks import build_task


def test_cross_entropy_averages_over_labelled_pixels_only():
    spec = build_task("semseg", num_classes=2)
    pred = torch.tensor([[[[2.0, 0.0, 5.0]], [[0.0, 1.0, -5.0]]]])  # 1×2×1×3
    target = torch.tensor([[[0, 1, 255]]])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert spec.loss(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_all_ignored_batch_gives_zero_loss_and_zero_gradients():
    cases = {
        "semseg": (build_task("semseg", num_classes=3), torch.full((1, 2, 2), 255, dtype=torch.long), 3),
        "depth": (build_task("depth"), torch.zeros(1, 1, 2, 2), 1),
        "normals": (build_task("normals"), torch.zeros(1, 3, 2, 2), 3),
        "sal": (build_task("sal"), torch.full((1, 1, 2, 2), 255.0), 1),
        "edge": (build_task("edge"), torch.full((1, 1, 2, 2), 255.0), 1),
    }
    for name, (spec, target, channels) in cases.items():
        pred = torch.randn(1, channels, 2, 2, requires_grad=True)
        loss = spec.loss(pred, target)
        loss.backward()
        assert loss.item() == 0.0, name
        assert torch.equal(pred.grad, torch.zeros_like(pred)), name


def test_depth_l1_masks_invalid_pixels():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [2.0, 8.0]]]])
    assert build_task("depth").loss(pred, target).item() == pytest.approx((0 + 1 + 4) / 3)


def test_normals_l1_normalises_prediction_and_divides_by_pixels_or_elements():
    up = torch.tensor([0.0, 0.0, 1.0])
    target = torch.stack([up, up, torch.zeros(3)], dim=1).view(1, 3, 1, 3)
    pred = torch.stack([2.0 * up, torch.tensor([5.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 1.0])], dim=1).view(1, 3, 1, 3)
    # pixel 1: normalised exactly → 0; pixel 2: |1−0| + 0 + |0−1| = 2; pixel 3 invalid (all-zero label)
    assert build_task("normals").loss(pred, target).item() == pytest.approx(2 / 2)
    assert build_task("normals", l1_reduction="element").loss(pred, target).item() == pytest.approx(2 / 6)


def test_edge_weighted_bce_uses_fixed_positive_weight():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    loss = build_task("edge").loss(torch.zeros(1, 1, 2, 2), target)
    assert loss.item() == pytest.approx((0.95 + 3 * 0.05) * math.log(2) / 4)
    padded = torch.tensor([[[[1.0, 0.0], [0.0, 255.0]]]])
    loss = build_task("edge", pos_weight=0.8).loss(torch.zeros(1, 1, 2, 2), padded)
    assert loss.item() == pytest.approx((0.8 + 2 * 0.2) * math.log(2) / 3)


def test_saliency_balanced_bce_uses_adaptive_weight():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    pred = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])
    w = 3 / 4  # negatives / labelled pixels

    def sp(x: float) -> float:  # softplus: −log σ(−x)
        return math.log1p(math.exp(x))

    expected = (w * sp(-1.0) + (1 - w) * (sp(-1.0) + sp(0.0) + sp(2.0))) / 4
    assert build_task("sal").loss(pred, target).item() == pytest.approx(expected, rel=1e-6)
