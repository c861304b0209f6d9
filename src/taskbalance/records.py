"""The typed records of a run directory's JSON-lines logs, written and read through this module only.

``metrics.jsonl`` holds a :class:`TrainRecord` every ``log_every`` steps and a :class:`ValidationRecord` at every
evaluation (told apart by ``kind``); ``diagnostics.jsonl`` holds a :class:`DiagnosticsRecord` every
``diagnostics.every`` steps. A record is one JSON object per line, its keys in field order; non-finite floats are
written as ``null`` (:mod:`taskbalance.jsonlines`). Readers skip a torn last line and ignore keys they do not know,
so older logs stay readable.

This module sits beside :mod:`taskbalance.jsonlines` and imports nothing else of the package: training writes the
records, training, the study, the doctor and the figures read them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from taskbalance.jsonlines import JsonLines

#: A run directory's training and validation log.
METRICS_FILE = "metrics.jsonl"
#: A run directory's gradient-diagnostics log.
DIAGNOSTICS_FILE = "diagnostics.jsonl"

#: task -> value (``None``: a non-finite value, written as null)
PerTask = dict[str, float | None]
#: task -> metric -> value
Metrics = dict[str, dict[str, float | None]]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object written to its log (keys in field order; unset optional keys left out)."""
        return self.model_dump(exclude=self._omitted())

    def _omitted(self) -> set[str]:
        return set()


class TrainRecord(_Record):
    """One logged training step: the learning rate, the summed and per-task losses and the method's weights."""

    step: int
    kind: Literal["train"] = "train"
    epoch: int = 0
    lr: float | None = None
    loss: float | None = None
    losses: PerTask = Field(default_factory=dict)
    weights: PerTask = Field(default_factory=dict)


class ValidationRecord(_Record):
    """One evaluation on the validation split: every metric, the selection score (Δm against the reference; None
    when undefined), whether it is the best so far, and each task's primary metric and direction."""

    step: int
    kind: Literal["val"] = "val"
    metrics: Metrics
    score: float | None = None
    best: bool = False
    primary: dict[str, str]
    higher_is_better: dict[str, bool] = Field(default_factory=dict)

    def primary_values(self) -> dict[str, float]:
        """Each task's primary metric (tasks whose value is missing or non-finite left out)."""
        values = {t: self.metrics.get(t, {}).get(m) for t, m in self.primary.items()}
        return {t: float(v) for t, v in values.items() if v is not None}


MetricsRecord = Annotated[TrainRecord | ValidationRecord, Field(discriminator="kind")]
_METRICS: TypeAdapter[TrainRecord | ValidationRecord] = TypeAdapter(MetricsRecord)


class DiagnosticsRecord(_Record):
    """One step's gradient geometry on the diagnosed source (see :mod:`taskbalance.training.diagnostics`): per task
    the loss, weight, gradient norm ``‖g_i‖``, weighted norm ``w_i‖g_i‖`` and ``cos(g_i, d)``; per task pair
    (``"a|b"``) the cosine and dot product; with URL, each task's feature distance to its teacher."""

    step: int
    source: str | None = None
    tasks: list[str] = Field(default_factory=list)
    losses: PerTask = Field(default_factory=dict)
    weights: PerTask = Field(default_factory=dict)
    grad_norms: PerTask = Field(default_factory=dict)
    weighted_grad_norms: PerTask = Field(default_factory=dict)
    cos_to_update: PerTask | None = None
    cos: PerTask = Field(default_factory=dict)
    dot: PerTask = Field(default_factory=dict)
    feature_distance: PerTask | None = None

    #: the groups of per-task or per-pair values, by name (what the figures and summaries iterate over)
    GROUPS: ClassVar[tuple[str, ...]] = ("losses", "weights", "grad_norms", "weighted_grad_norms", "cos_to_update",
                                         "cos", "dot", "feature_distance")

    def group(self, name: str) -> PerTask:
        """The values of group ``name`` (one of :attr:`GROUPS`; empty when not logged)."""
        if name not in self.GROUPS:
            raise KeyError(f"{name!r} is not a diagnostics group; choose from {', '.join(self.GROUPS)}")
        return getattr(self, name) or {}

    def shares(self, name: str, tasks: Sequence[str] | None = None) -> dict[str, float] | None:
        """Each task's part ``|v_i| / Σ_j |v_j|`` of group ``name`` (e.g. ``weighted_grad_norms``: the task's share of
        the update's gradient norm) over ``tasks`` (default: the record's tasks); None when a task's value is
        missing or non-finite, or the sum is 0."""
        values = self.group(name)
        row = [values.get(t) for t in (self.tasks if tasks is None else tasks)]
        finite = [abs(v) for v in row if v is not None and math.isfinite(v)]
        total = math.fsum(finite)
        if not row or len(finite) != len(row) or total <= 0:
            return None
        return {t: v / total for t, v in zip(self.tasks if tasks is None else tasks, finite, strict=True)}

    def _omitted(self) -> set[str]:
        return {"feature_distance"} if self.feature_distance is None else set()


def append_record(log: JsonLines, record: TrainRecord | ValidationRecord | DiagnosticsRecord) -> None:
    """Append ``record`` to ``log`` (flushed to disk)."""
    log.append(record.to_json())


def read_metrics(path: Path) -> list[TrainRecord | ValidationRecord]:
    """The records of a ``metrics.jsonl`` file, or of the one in run directory ``path`` (empty when there is none)."""
    return [_METRICS.validate_python(raw) for raw in JsonLines(_file(path, METRICS_FILE))]


def read_validation(path: Path) -> list[ValidationRecord]:
    """The validation records of a run's ``metrics.jsonl`` (``path``: the file or its run directory)."""
    lines = JsonLines(_file(path, METRICS_FILE))
    return [ValidationRecord.model_validate(raw) for raw in lines if raw.get("kind") == "val"]


def read_diagnostics(path: Path) -> list[DiagnosticsRecord]:
    """The records of a ``diagnostics.jsonl`` file, or of the one in run directory ``path`` (empty when none)."""
    return [DiagnosticsRecord.model_validate(raw) for raw in JsonLines(_file(path, DIAGNOSTICS_FILE))]


def _file(path: Path, name: str) -> Path:
    path = Path(path)
    return path if path.suffix == ".jsonl" else path / name
