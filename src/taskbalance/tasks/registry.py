"""``build_task``: the :class:`TaskSpec` of each task of the paper, with its reference loss and metrics.

Each task's builder is registered explicitly with :func:`register_task` (see :mod:`taskbalance.registration`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import Tensor

from taskbalance.conventions import IGNORE_VALUE, TASK_LABELS, TASK_NAMES
from taskbalance.registration import Registry
from taskbalance.tasks.losses import (
    NormalsReduction,
    TaskLoss,
    balanced_bce_loss,
    cross_entropy_loss,
    depth_l1_loss,
    normals_l1_loss,
)
from taskbalance.tasks.metrics import (
    ApproxEdgeMeter,
    DepthMeter,
    ExactEdgeMeter,
    NormalsMeter,
    SaliencyMeter,
    SegmentationMeter,
)
from taskbalance.tasks.metrics.saliency import MaxFDefinition
from taskbalance.tasks.spec import Meter, TaskError, TaskSpec
from taskbalance.tasks.validation import InputCheck

#: Number of human-part classes on PASCAL-Context (background + 6 parts).
HUMAN_PARTS_CLASSES = 7
#: Default positive-class weight of the edge loss (paper appendix; MTLP/InvPT; ATRC-NYUD uses 0.8).
EDGE_POS_WEIGHT = 0.95
#: BSDS matching tolerance per dataset (fraction of the image diagonal).
EDGE_MAX_DIST: dict[str, float] = {"nyud": 0.011, "pascal": 0.0075}

TaskBuilder = Callable[..., TaskSpec]
#: Task name → the builder of its :class:`TaskSpec` (keyword options only).
TASKS: Registry[TaskBuilder] = Registry("task")
#: Decorator registering a task builder: ``@register_task("depth")``.
register_task = TASKS.register


def _spec(
    name: str,
    check: InputCheck,
    loss: Callable[[Tensor, Tensor], Tensor],
    meter: Callable[..., Meter],
    primary: str,
    higher: bool,
    metrics: tuple[str, ...],
) -> TaskSpec:
    """Assemble a spec; the loss and the meter factory are bound to the task's :class:`InputCheck`."""
    return TaskSpec(
        name=name,
        label=TASK_LABELS[name],
        out_channels=check.channels,
        loss=TaskLoss(check, loss),
        meter=partial(meter, check),
        primary_metric=primary,
        higher_is_better=higher,
        ignore_value=IGNORE_VALUE[name],
        metrics=metrics,
    )


def _segmentation(name: str, num_classes: int, skip_trivial_images: bool) -> TaskSpec:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise TaskError(name, f"num_classes must be an integer ≥ 2, got {num_classes!r}")
    check = InputCheck(name, num_classes, "classes", num_classes=num_classes)
    meter = partial(SegmentationMeter, num_classes=num_classes, skip_trivial_images=skip_trivial_images)
    return _spec(name, check, cross_entropy_loss, meter, "mIoU", True, ("mIoU", "pixel_acc"))


@register_task("semseg")
def _semseg(num_classes: int) -> TaskSpec:
    """Semantic segmentation: CE (255 ignored); split-level mIoU (NYUD: 40 classes; PASCAL: 21)."""
    return _segmentation("semseg", num_classes, skip_trivial_images=False)


@register_task("human_parts")
def _human_parts(num_classes: int = HUMAN_PARTS_CLASSES) -> TaskSpec:
    """Human parts: CE (255 ignored); split-level mIoU skipping all-background/unlabelled images (MTLP)."""
    return _segmentation("human_parts", num_classes, skip_trivial_images=True)


@register_task("depth")
def _depth() -> TaskSpec:
    """Depth: L1 over valid pixels; pooled RMSE, log-RMSE, abs-rel."""
    check = InputCheck("depth", 1, "dense", target_channels=1)
    return _spec("depth", check, depth_l1_loss, DepthMeter, "rmse", False, ("rmse", "log_rmse", "abs_rel"))


@register_task("normals")
def _normals(l1_reduction: NormalsReduction = "pixel", quantize_png: bool = False) -> TaskSpec:
    """Surface normals: L1 on the L2-normalised prediction; mean angular error and friends."""
    if l1_reduction not in ("pixel", "element"):
        raise TaskError("normals", f"l1_reduction must be 'pixel' or 'element', got {l1_reduction!r}")
    check = InputCheck("normals", 3, "dense", target_channels=3)
    loss = partial(normals_l1_loss, reduction=l1_reduction)
    meter = partial(NormalsMeter, quantize_png=quantize_png)
    metrics = ("mean", "median", "rmse", "within_11.25", "within_22.5", "within_30")
    return _spec("normals", check, loss, meter, "mean", False, metrics)


@register_task("sal")
def _sal(maxf: MaxFDefinition = "pooled", beta_squared: float | None = None) -> TaskSpec:
    """Saliency: adaptive balanced BCE; maxF (``pooled`` β²=0.3 as ATRC, or ``per_image`` β²=1 as MTLP)."""
    if maxf not in ("pooled", "per_image"):
        raise TaskError("sal", f"maxf must be 'pooled' or 'per_image', got {maxf!r}")
    check = InputCheck("sal", 1, "binary")
    meter = partial(SaliencyMeter, definition=maxf, beta_squared=beta_squared)
    return _spec("sal", check, partial(balanced_bce_loss, pos_weight=None), meter, "maxF", True, ("maxF",))


@register_task("edge")
def _edge(
    exact_odsf: bool = False,
    max_dist: float = EDGE_MAX_DIST["nyud"],
    pos_weight: float = EDGE_POS_WEIGHT,
    thresholds: int = 99,
    nms: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> TaskSpec:
    """Edges: weighted BCE (w=0.95 on edges); exact BSDS odsF, or the fast ``approx_F`` during training."""
    if not 0.0 < pos_weight < 1.0:
        raise TaskError("edge", f"pos_weight must lie in (0, 1), got {pos_weight}")
    if not max_dist > 0:
        raise TaskError("edge", f"max_dist must be positive (0.011 NYUD, 0.0075 PASCAL), got {max_dist}")
    if thresholds not in (99, 101):
        raise TaskError("edge", f"thresholds must be 99 (MTLP) or 101 (BDET), got {thresholds}")
    check = InputCheck("edge", 1, "binary")
    loss = partial(balanced_bce_loss, pos_weight=pos_weight)
    if exact_odsf:
        meter = partial(
            ExactEdgeMeter, max_dist=max_dist, thresholds=thresholds, nms=nms, workers=workers, progress=progress
        )
        return _spec("edge", check, loss, meter, "odsF", True, ("odsF", "threshold", "precision", "recall"))
    return _spec("edge", check, loss, partial(ApproxEdgeMeter, max_dist=max_dist), "approx_F", True, ("approx_F",))


assert tuple(TASKS) == TASK_NAMES, "every canonical task needs a builder, in canonical order"


def available_tasks() -> tuple[str, ...]:
    """The task names :func:`build_task` accepts, in canonical order."""
    return tuple(TASKS)


def task_options(name: str) -> dict[str, Any]:
    """The keyword options of task ``name`` and their defaults (``inspect.Parameter.empty`` when required)."""
    builder = _builder(name)
    return {p.name: p.default for p in inspect.signature(builder).parameters.values()}


def _builder(name: str) -> TaskBuilder:
    if name not in TASKS:
        raise TaskError(name, f"unknown task; valid tasks: {', '.join(TASKS)}")
    return TASKS[name]


def build_task(name: str, **options: Any) -> TaskSpec:
    """The :class:`TaskSpec` of task ``name`` (one of :data:`~taskbalance.conventions.TASK_NAMES`).

    Options per task (all keyword):

    * ``semseg``: ``num_classes`` (required: 40 NYUD, 21 PASCAL).
    * ``human_parts``: ``num_classes=7``.
    * ``depth``: none.
    * ``normals``: ``l1_reduction="pixel"`` (InvPT) or ``"element"`` (MTLP); ``quantize_png=False``.
    * ``sal``: ``maxf="pooled"`` (ATRC, β²=0.3) or ``"per_image"`` (MTLP, β²=1); ``beta_squared=None``.
    * ``edge``: ``exact_odsf=False``, ``max_dist=0.011`` (0.0075 for PASCAL), ``pos_weight=0.95``,
      ``thresholds=99`` (or 101), ``nms=False`` (BDET: True), ``workers=None``, ``progress=True``.

    Raises:
        TaskError: unknown task (listing the valid ones), unknown or missing option, or a bad option value.
    """
    builder = _builder(name)
    accepted = task_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise TaskError(name, f"unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    missing = [k for k, v in accepted.items() if v is inspect.Parameter.empty and k not in options]
    if missing:
        raise TaskError(name, f"missing required option(s): {', '.join(missing)}")
    return builder(**options)
