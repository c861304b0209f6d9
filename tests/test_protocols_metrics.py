"""Protocol tasks, meters and reporting rules, checked against hand-computed values."""

import numpy as np
import pytest
import torch

from taskbalance.protocols.delta import (
    NYUV2_COLUMNS,
    NYUV2_STL_BASELINE,
    MetricColumn,
    best_epoch,
    last_epochs_mean,
    protocol_delta_m,
)
from taskbalance.protocols.tasks import (
    attribute_task,
    cosine_normals_loss,
    digit_task,
    mtan_depth,
    mtan_normals,
    mtan_semseg,
)
from taskbalance.results import ResultsError
from taskbalance.tasks import TaskError


def test_depth_errors_over_valid_pixels():
    meter = mtan_depth().meter()
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    target = torch.tensor([[[[2.0, 0.0], [3.0, 2.0]]]])  # one invalid pixel
    meter.update(pred, target)
    # errors 1, 0, 2 over 3 valid pixels; relative 1/2, 0, 2/2
    assert meter.compute() == pytest.approx({"abs_err": 1.0, "rel_err": 0.5})


def test_depth_loss_is_l1_over_valid_pixels():
    spec = mtan_depth()
    loss = spec.loss(torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[3.0, 0.0]]]]))
    assert float(loss) == pytest.approx(2.0)
    assert spec.primary_metric == "abs_err" and not spec.higher_is_better


def test_cosine_normals_loss_values():
    target = torch.zeros(1, 3, 1, 3)
    target[0, 2, 0, 0] = 1.0   # aligned with the prediction
    target[0, 2, 0, 1] = -1.0  # opposite
    pred = torch.zeros(1, 3, 1, 3)
    pred[0, 2] = 5.0           # normalised to (0, 0, 1); third pixel is invalid (all-zero label)
    # dots +1 and -1 over the two valid pixels: 1 - (1 - 1) / 2
    assert float(cosine_normals_loss(pred, target)) == pytest.approx(1.0)
    aligned = cosine_normals_loss(pred[..., :1], target[..., :1])
    assert float(aligned) == pytest.approx(0.0, abs=1e-7)


def test_cosine_normals_loss_without_valid_pixels_is_a_connected_zero():
    pred = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = cosine_normals_loss(pred, torch.zeros(1, 3, 2, 2))
    loss.backward()
    assert float(loss.detach()) == 0.0 and pred.grad is not None and float(pred.grad.abs().sum()) == 0.0


def test_normals_task_reports_the_papers_metrics():
    spec = mtan_normals()
    meter = spec.meter()
    target = torch.zeros(1, 3, 1, 2)
    target[0, 2] = 1.0
    pred = torch.zeros(1, 3, 1, 2)
    pred[0, 2, 0, 0] = 1.0  # 0°
    pred[0, 0, 0, 1] = 1.0  # 90°
    meter.update(pred, target)
    metrics = meter.compute()
    assert metrics["mean"] == pytest.approx(45.0)
    assert metrics["within_11.25"] == pytest.approx(50.0)
    assert set(spec.metrics) <= set(metrics)


def test_semseg_reuses_the_study_task_with_255_ignored():
    spec = mtan_semseg(13)
    assert spec.out_channels == 13 and spec.primary_metric == "mIoU"


def test_accuracy_meter_and_cross_entropy():
    spec = digit_task("left", "Left")
    logits = torch.tensor([[2.0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0], [0.0, 3.0, 0.0, 0, 0, 0, 0, 0, 0, 0]])
    labels = torch.tensor([0, 2])
    meter = spec.meter()
    meter.update(logits, labels)
    assert meter.compute() == {"accuracy": 50.0}
    expected = torch.nn.functional.cross_entropy(logits, labels)
    assert float(spec.loss(logits, labels)) == pytest.approx(float(expected))


def test_binary_f1_matches_hand_counts():
    spec = attribute_task("Smiling")
    logits = torch.tensor([[3.0], [2.0], [-1.0], [-2.0], [1.0]])  # predicted 1, 1, 0, 0, 1
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])               # tp=2 fp=1 fn=1 tn=1
    meter = spec.meter()
    meter.update(logits, labels)
    metrics = meter.compute()
    precision, recall = 2 / 3, 2 / 3
    assert metrics["f1"] == pytest.approx(100 * 2 * precision * recall / (precision + recall), rel=1e-6)
    assert metrics["accuracy"] == pytest.approx(60.0)
    bce = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits[:, 0]), labels)
    assert float(spec.loss(logits, labels)) == pytest.approx(float(bce), rel=1e-5)


@pytest.mark.parametrize(
    "pred, target, problem",
    [
        (torch.zeros(2, 10), torch.tensor([0.0, 1.0]), "integer class ids"),
        (torch.zeros(2, 10), torch.tensor([0, 10]), "outside"),
        (torch.zeros(2, 9), torch.tensor([0, 1]), "B×10"),
        (torch.zeros(2, 10), torch.tensor([0, 1, 2]), "one per image"),
    ],
)
def test_digit_task_rejects_bad_batches(pred, target, problem):
    with pytest.raises(TaskError, match=problem):
        digit_task("left", "Left").loss(pred, target)


def test_attribute_task_rejects_non_binary_labels():
    with pytest.raises(TaskError, match="outside"):
        attribute_task("Young").loss(torch.zeros(2, 1), torch.tensor([0.0, 0.5]))


def test_delta_m_hand_computed_in_the_papers_convention_higher_is_better():
    """Issue 11 item 5: one Δm convention everywhere, the AvgNorm paper's Eq. 5 sign (higher is better)."""
    columns = (MetricColumn("a", "acc", True, "Acc"), MetricColumn("b", "err", False, "Err"))
    metrics = {"a": {"acc": 110.0}, "b": {"err": 90.0}}
    baseline = {"a": {"acc": 100.0}, "b": {"err": 100.0}}
    assert protocol_delta_m(metrics, baseline, columns) == pytest.approx(10.0)
    worse = {"a": {"acc": 90.0}, "b": {"err": 130.0}}
    assert protocol_delta_m(worse, baseline, columns) == pytest.approx(-20.0)


def test_method_papers_numbers_are_converted_and_the_conversion_stated():
    from taskbalance.protocols.delta import REPORTED_DELTA_M, from_papers_convention
    from taskbalance.protocols.report import reported_section

    assert from_papers_convention(-4.57) == 4.57
    famo = next(r for r in REPORTED_DELTA_M["cityscapes"] if r.method == "famo")
    assert (famo.printed, famo.converted) == (8.13, -8.13)
    text = reported_section("nyuv2-mtan-cpu")
    assert "converted = −printed, higher is better" in text and "| imgrad | -4.57 | +4.57 |" in text
    assert reported_section("multimnist") == ""


def test_delta_m_matches_the_nash_mtl_formula_on_fractions():
    # Nash-MTL: BASE in fractions, (KK ** SIGN * (a - BASE) / BASE).mean() * 100 with KK = -1
    base = np.array([0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720, 0.6915])
    sign = np.array([1, 1, 0, 0, 0, 0, 1, 1, 1])
    run = np.array([0.4011, 0.6630, 0.5380, 0.2250, 25.23, 19.54, 0.2980, 0.5683, 0.6900])
    expected = -((-1.0) ** sign * (run - base) / base).mean() * 100  # Nash-MTL's number, negated (higher is better)
    percent = {0, 1, 6, 7, 8}
    metrics: dict[str, dict[str, float]] = {}
    for i, column in enumerate(NYUV2_COLUMNS):
        metrics.setdefault(column.task, {})[column.metric] = run[i] * (100 if i in percent else 1)
    assert protocol_delta_m(metrics, NYUV2_STL_BASELINE, NYUV2_COLUMNS) == pytest.approx(expected)
    assert protocol_delta_m(NYUV2_STL_BASELINE, NYUV2_STL_BASELINE, NYUV2_COLUMNS) == 0.0


def test_delta_m_names_a_missing_metric():
    with pytest.raises(ResultsError, match="'rel_err'"):
        protocol_delta_m({"depth": {"abs_err": 1.0}}, {"depth": {"abs_err": 1.0, "rel_err": 1.0}},
                         [MetricColumn("depth", "abs_err", False, ""), MetricColumn("depth", "rel_err", False, "")])


def test_last_epochs_mean_uses_the_last_ten_epochs():
    history = [{"semseg": {"mIoU": float(e)}, "depth": {"abs_err": 2.0 * e}} for e in range(12)]
    mean = last_epochs_mean(history)
    assert mean == {"depth": {"abs_err": pytest.approx(13.0)}, "semseg": {"mIoU": pytest.approx(6.5)}}
    assert last_epochs_mean(history, epochs=1)["semseg"]["mIoU"] == 11.0


def test_last_epochs_mean_errors():
    with pytest.raises(ResultsError, match="at least 10"):
        last_epochs_mean([{"a": {"m": 1.0}}] * 9)
    with pytest.raises(ResultsError, match="same tasks"):
        last_epochs_mean([{"a": {"m": 1.0}}, {"a": {"n": 1.0}}], epochs=2)


def test_best_epoch_takes_the_first_maximum():
    assert best_epoch([0.1, 0.5, 0.5, 0.2]) == 1
    with pytest.raises(ResultsError):
        best_epoch([])
