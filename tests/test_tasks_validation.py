"""Bad input to task losses and meters, and build_task options: clear errors that name the task and the problem."""

import pytest
import torch

from taskbalance.conventions import TASK_NAMES
from taskbalance.tasks import TaskError, available_tasks, build_task


def _specs():
    return {
        "semseg": (
            build_task("semseg", num_classes=4),
            torch.zeros(2, 4, 3, 3),
            torch.zeros(2, 3, 3, dtype=torch.long),
        ),
        "human_parts": (build_task("human_parts"), torch.zeros(2, 7, 3, 3), torch.zeros(2, 3, 3, dtype=torch.long)),
        "depth": (build_task("depth"), torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)),
        "normals": (build_task("normals"), torch.zeros(2, 3, 3, 3), torch.ones(2, 3, 3, 3)),
        "sal": (build_task("sal"), torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)),
        "edge": (build_task("edge"), torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)),
    }


def test_every_canonical_task_builds_with_contract_fields():
    assert available_tasks() == TASK_NAMES
    expected = {
        "semseg": ("mIoU", True, 4),
        "human_parts": ("mIoU", True, 7),
        "depth": ("rmse", False, 1),
        "normals": ("mean", False, 3),
        "sal": ("maxF", True, 1),
        "edge": ("approx_F", True, 1),
    }
    for name, (spec, pred, target) in _specs().items():
        primary, higher, channels = expected[name]
        assert (spec.name, spec.primary_metric, spec.higher_is_better, spec.out_channels) == (
            name,
            primary,
            higher,
            channels,
        )
        assert spec.metrics[0] == primary
        assert torch.isfinite(spec.loss(pred, target))
    exact = build_task("edge", exact_odsf=True, max_dist=0.011)
    assert exact.primary_metric == "odsF"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_prediction_and_label_shape_mismatch_names_task(name):
    spec, pred, target = _specs()[name]
    with pytest.raises(
        TaskError, match=rf"task '{name}': label must be .* matching the prediction 2×.*×3×3, got shape 2×.*3×2$"
    ):
        spec.loss(pred, target[..., :2])
    with pytest.raises(TaskError, match=rf"task '{name}'.*prediction must be B×{spec.out_channels}×H×W"):
        spec.meter().update(pred[:, :1].repeat(1, spec.out_channels + 1, 1, 1), target)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_dtype_mismatch_names_task(name):
    spec, pred, target = _specs()[name]
    with pytest.raises(TaskError, match=rf"task '{name}'.*prediction must be floating point"):
        spec.loss(pred.long(), target)
    wrong = target.float() if name in ("semseg", "human_parts") else target.long()
    with pytest.raises(TaskError, match=rf"task '{name}'.*label must be"):
        spec.meter().update(pred, wrong)


def test_class_labels_outside_range_are_rejected_but_255_is_ignored():
    spec = build_task("semseg", num_classes=4)
    pred = torch.zeros(1, 4, 2, 2)
    ok = torch.tensor([[[0, 3], [255, 1]]])
    spec.loss(pred, ok)
    for bad in (4, -1, 254):
        target = ok.clone()
        target[0, 0, 0] = bad
        with pytest.raises(
            TaskError, match=rf"task 'semseg': label values \[{bad}\] are outside the class range \[0, 3\]"
        ):
            spec.loss(pred, target)


def test_binary_labels_must_be_0_1_or_255():
    for name in ("edge", "sal"):
        spec = build_task(name)
        target = torch.tensor([[[[0.0, 1.0], [255.0, 0.5]]]])
        with pytest.raises(TaskError, match=rf"task '{name}': label values \[0.5\] are not 0, 1 or 255"):
            spec.meter().update(torch.zeros(1, 1, 2, 2), target)


def test_unknown_task_lists_valid_ones():
    with pytest.raises(TaskError, match="task 'segmentation': unknown task; valid tasks: semseg, human_parts, depth"):
        build_task("segmentation")


def test_bad_options_are_named():
    with pytest.raises(TaskError, match="task 'semseg': missing required option.*num_classes"):
        build_task("semseg")
    with pytest.raises(TaskError, match="task 'depth': unknown option.*foo; valid options: none"):
        build_task("depth", foo=1)
    with pytest.raises(TaskError, match="task 'edge': thresholds must be 99"):
        build_task("edge", thresholds=50)
    with pytest.raises(TaskError, match="task 'sal': maxf must be"):
        build_task("sal", maxf="mean")
    with pytest.raises(TaskError, match="task 'semseg': num_classes"):
        build_task("semseg", num_classes=1)
