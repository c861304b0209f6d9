"""mIoU / pixel accuracy against hand-computed confusion matrices."""

import pytest
import torch
import torch.nn.functional as F

from taskbalance.tasks import EmptyMeterError, build_task


def logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """B×C×H×W scores whose argmax is ``labels`` (B×H×W)."""
    return F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


TARGET = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
PRED = torch.tensor([[[0, 1, 1], [1, 1, 0]]])


def run(meter, *batches):
    for pred, target in batches:
        meter.update(pred, target)
    return meter.compute()


def test_hand_computed_case():
    # class 0: TP 1 FP 0 FN 1 → 1/2; class 1: TP 2 FP 2 FN 0 → 1/2; class 2: TP 0 FN 1 → 0
    out = run(build_task("semseg", num_classes=3).meter(), (logits(PRED, 3), TARGET))
    assert out["mIoU"] == pytest.approx(100 * (0.5 + 0.5 + 0) / 3)
    assert out["pixel_acc"] == pytest.approx(100 * 3 / 5)


def test_class_absent_from_split_counts_as_zero_in_mean():
    out = run(build_task("semseg", num_classes=4).meter(), (logits(PRED, 4), TARGET))
    assert out["mIoU"] == pytest.approx(100 * (0.5 + 0.5 + 0 + 0) / 4)


def test_all_ignored_image_changes_nothing():
    ignored = torch.full_like(TARGET, 255)
    out = run(
        build_task("semseg", num_classes=3).meter(),
        (logits(torch.cat([PRED, PRED]), 3), torch.cat([TARGET, ignored])),
    )
    assert out["mIoU"] == pytest.approx(100 / 3)
    with pytest.raises(EmptyMeterError, match="task 'semseg': no labelled pixel"):
        run(build_task("semseg", num_classes=3).meter(), (logits(PRED, 3), ignored))


def test_perfect_and_constant_predictions():
    labels = TARGET.clamp(max=2)
    assert run(build_task("semseg", num_classes=3).meter(), (logits(labels, 3), TARGET)) == {
        "mIoU": 100.0,
        "pixel_acc": 100.0,
    }
    constant = torch.zeros_like(TARGET)
    out = run(build_task("semseg", num_classes=3).meter(), (logits(constant, 3), TARGET))
    # class 0: TP 2, FP 3 → 2/5; classes 1 and 2 never predicted → 0
    assert out["mIoU"] == pytest.approx(100 * (2 / 5) / 3)
    assert out["pixel_acc"] == pytest.approx(100 * 2 / 5)


def test_confusion_is_pooled_over_the_split_not_averaged_per_image():
    a_t, a_p = torch.tensor([[[0, 0]]]), torch.tensor([[[0, 0]]])
    b_t, b_p = torch.tensor([[[1, 1]]]), torch.tensor([[[1, 0]]])
    out = run(build_task("semseg", num_classes=2).meter(), (logits(a_p, 2), a_t), (logits(b_p, 2), b_t))
    # pooled: class 0 TP 2 FP 1 → 2/3; class 1 TP 1 FN 1 → 1/2
    assert out["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)


def test_human_parts_skip_images_whose_label_is_all_background_or_all_ignored():
    meter = build_task("human_parts").meter()
    person = torch.tensor([[[0, 1], [2, 255]]])
    background = torch.zeros(1, 2, 2, dtype=torch.long)
    unlabelled = torch.full((1, 2, 2), 255)
    wrong = torch.full((1, 2, 2), 3)  # would add FPs for class 3 if the trivial images were counted
    meter.update(logits(person.clamp(max=6), 7), person)
    meter.update(logits(wrong, 7), background)
    meter.update(logits(wrong, 7), unlabelled)
    out = meter.compute()
    assert out["pixel_acc"] == 100.0
    assert out["mIoU"] == pytest.approx(100 * 3 / 7)  # classes 0, 1, 2 perfect; 3-6 empty union → 0
    mixed = torch.tensor([[[0, 0], [0, 255]]])  # background plus unlabelled: not a single value, so counted
    meter.update(logits(wrong, 7), mixed)
    assert meter.compute()["pixel_acc"] == pytest.approx(100 * 3 / 6)
