"""The reporting rules of the method papers: Δm over *every* metric of their tables, the single-task baselines
they hard-code, and the "mean of the last 10 epochs" of the per-epoch test metrics.

Δm averages over the M metric columns as CAGrad / Nash-MTL / FAMO / FairGrad / IMGrad do (Maninis et al. 2019), but
is printed in **one convention everywhere in taskbalance, the AvgNorm paper's Eq. (5): higher is better**:
``Δm = (1/M) Σ_m (−1)^{l_m} (M_m − B_m) / B_m · 100`` with ``l_m = 1`` when lower is better. The method papers print
the opposite sign (lower is better); :func:`from_papers_convention` converts their numbers (negation), and
:data:`REPORTED_DELTA_M` holds the numbers they report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taskbalance.results import ResultsError, task_improvements

Metrics = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class MetricColumn:
    """One column of a paper's table: the task, the metric key of its meter, its direction and header text."""

    task: str
    metric: str
    higher_is_better: bool
    header: str

    @property
    def key(self) -> str:
        """``task/metric``: a unique name of the column."""
        return f"{self.task}/{self.metric}"


def _normals_columns() -> tuple[MetricColumn, ...]:
    return (
        MetricColumn("normals", "mean", False, "Normal Mean"),
        MetricColumn("normals", "median", False, "Normal Median"),
        MetricColumn("normals", "within_11.25", True, "11.25"),
        MetricColumn("normals", "within_22.5", True, "22.5"),
        MetricColumn("normals", "within_30", True, "30"),
    )


#: Cityscapes table columns (CAGrad Table 3 / Nash-MTL Table 3): mIoU, pixel accuracy, depth abs / rel error.
CITYSCAPES_COLUMNS: tuple[MetricColumn, ...] = (
    MetricColumn("semseg", "mIoU", True, "mIoU"), MetricColumn("semseg", "pixel_acc", True, "Pix Acc"),
    MetricColumn("depth", "abs_err", False, "Abs Err"), MetricColumn("depth", "rel_err", False, "Rel Err"),
)
#: NYUv2 table columns (CAGrad Table 2 / Nash-MTL Table 2): the Cityscapes ones plus the five normals metrics.
NYUV2_COLUMNS: tuple[MetricColumn, ...] = CITYSCAPES_COLUMNS + _normals_columns()

#: NYUv2 single-task (STL, SegNet) baseline hard-coded as ``BASE`` in Nash-MTL ``experiments/nyuv2/utils.py`` (from
#: CAGrad): ``[0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720, 0.6915]``. mIoU, pixel accuracy and
#: the "within" fractions are converted to percent, the unit of our meters (Δm is unit-free per metric).
NYUV2_STL_BASELINE: dict[str, dict[str, float]] = {
    "semseg": {"mIoU": 38.30, "pixel_acc": 63.76},
    "depth": {"abs_err": 0.6754, "rel_err": 0.2780},
    "normals": {"mean": 25.01, "median": 19.21, "within_11.25": 30.14, "within_22.5": 57.20, "within_30": 69.15},
}
#: Cityscapes STL baseline, Nash-MTL ``experiments/cityscapes/utils.py`` ``BASE = [0.7401, 0.9316, 0.0125, 27.77]``
#: (mIoU and pixel accuracy in percent here; depth errors as printed, on the repository's depth maps).
CITYSCAPES_STL_BASELINE: dict[str, dict[str, float]] = {
    "semseg": {"mIoU": 74.01, "pixel_acc": 93.16},
    "depth": {"abs_err": 0.0125, "rel_err": 27.77},
}


def protocol_delta_m(metrics: Metrics, baseline: Metrics, columns: Sequence[MetricColumn]) -> float:
    """Δm in percent over the metric ``columns``, higher is better (the paper's Eq. (5) sign; see the module
    docstring).

    Raises:
        ResultsError: a column's metric is missing from ``metrics`` or ``baseline``, is not finite, or the
            baseline value is 0.
    """
    if not columns:
        raise ResultsError("Δm needs at least one metric column")
    values: dict[str, float] = {}
    reference: dict[str, float] = {}
    for column in columns:
        for what, source, target in (("metrics", metrics, values), ("baseline", baseline, reference)):
            try:
                target[column.key] = float(source[column.task][column.metric])
            except KeyError:
                raise ResultsError(f"the {what} have no {column.metric!r} for task {column.task!r}") from None
    improvements = task_improvements(values, reference, {c.key: c.higher_is_better for c in columns})
    return sum(improvements.values()) / len(improvements)


def from_papers_convention(value: float) -> float:
    """A Δm as the method papers print it (lower is better) in taskbalance's convention (higher is better)."""
    return -value


@dataclass(frozen=True)
class ReportedDelta:
    """A Δm a method paper reports, as printed (lower is better), and where."""

    method: str
    printed: float
    source: str

    @property
    def converted(self) -> float:
        """The number in taskbalance's convention (higher is better)."""
        return from_papers_convention(self.printed)


_IMGRAD = "IMGrad paper, MTAN/SegNet protocol, 3 seeds (its comparison table)"
#: Δm reported by the method papers per benchmark, as printed (lower is better); source: shared/reference/methods.md.
REPORTED_DELTA_M: dict[str, tuple[ReportedDelta, ...]] = {
    "nyuv2-mtan": (ReportedDelta("imgrad", -4.57, _IMGRAD), ReportedDelta("nashmtl", -4.04, _IMGRAD),
                   ReportedDelta("famo", -4.10, _IMGRAD), ReportedDelta("cagrad", 0.29, _IMGRAD)),
    "cityscapes": (ReportedDelta("imgrad", 6.61, _IMGRAD), ReportedDelta("nashmtl", 6.82, _IMGRAD),
                   ReportedDelta("famo", 8.13, _IMGRAD), ReportedDelta("cagrad", 11.58, _IMGRAD)),
    "celeba": (ReportedDelta("imgrad", 1.27, _IMGRAD), ReportedDelta("famo", 1.21, _IMGRAD)),
}


def last_epochs_mean(history: Sequence[Metrics], epochs: int = 10) -> dict[str, dict[str, float]]:
    """Every metric averaged over the last ``epochs`` entries of a per-epoch metric history.

    The papers' reporting rule for NYUv2 and Cityscapes: the test metrics are computed after every epoch and the
    table reports their mean over the last 10 epochs (Nash-MTL / CAGrad result scripts:
    ``logs[stat][min_epoch - 10:min_epoch].mean()``). Δm is then computed from these means.

    Raises:
        ResultsError: fewer than ``epochs`` entries, ``epochs < 1``, or the last epochs report different metrics.
    """
    if epochs < 1:
        raise ResultsError(f"epochs must be at least 1, got {epochs}")
    if len(history) < epochs:
        raise ResultsError(
            f"the mean of the last {epochs} epochs needs at least {epochs} evaluated epochs, got {len(history)}"
        )
    window = list(history)[-epochs:]
    keys = {(t, m) for t, values in window[0].items() for m in values}
    for entry in window[1:]:
        if {(t, m) for t, values in entry.items() for m in values} != keys:
            raise ResultsError("the last epochs do not all report the same tasks and metrics")
    mean: dict[str, dict[str, float]] = {}
    for task, metric in sorted(keys):
        value = math.fsum(entry[task][metric] for entry in window) / epochs
        mean.setdefault(task, {})[metric] = value
    return mean


def best_epoch(scores: Sequence[float]) -> int:
    """Index of the first epoch with the highest validation score (FAMO's CelebA selection: best mean val F1)."""
    if not scores:
        raise ResultsError("no validation score to select an epoch from")
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
