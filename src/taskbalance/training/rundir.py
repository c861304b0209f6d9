"""The layout of a run directory and its append-only JSON-lines logs.

::

    RUN/config.yaml            resolved config
    RUN/metrics.jsonl          one record per logged step / evaluation ({"step", "kind", ...})
    RUN/diagnostics.jsonl      gradient diagnostics every N steps
    RUN/tb/                    TensorBoard events
    RUN/checkpoints/last.json  -> last-<step>/{model.safetensors,state.pt}: full training state (resume)
    RUN/checkpoints/best.json  -> best-<step>/model.safetensors: weights of the selected model
    RUN/imbalance.json         imbalance summary of the gradient diagnostics
    RUN/results.json           final evaluation (taskbalance.results format); its presence marks the run finished
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from taskbalance.atomic import atomic_write_text


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically write a JSON document."""
    atomic_write_text(path, json.dumps(_clean(data), indent=2) + "\n")


class JsonLines:
    """An append-only JSON-lines log whose records carry a ``step``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record and flush it to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(_clean(record)) + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        """All records (a torn last line, from a crash, is skipped)."""
        return list(self)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path) as handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def truncate_after(self, step: int) -> None:
        """Drop the records logged after ``step`` (they are re-logged when a run resumes from ``step``)."""
        if self.path.exists():
            kept = [json.dumps(r) + "\n" for r in self if int(r.get("step", 0)) <= step]
            atomic_write_text(self.path, "".join(kept))


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> JsonLines:
        return JsonLines(self.root / "metrics.jsonl")

    @property
    def diagnostics(self) -> JsonLines:
        return JsonLines(self.root / "diagnostics.jsonl")

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def imbalance(self) -> Path:
        return self.root / "imbalance.json"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    def is_finished(self) -> bool:
        """True once the final evaluation has been written."""
        return self.results.is_file()

    def has_checkpoint(self) -> bool:
        """True when a resumable last checkpoint exists."""
        return (self.checkpoints / "last.json").is_file()

    def best_validation_record(self) -> dict[str, Any] | None:
        """The validation record (metrics, primary, higher_is_better) of the run's selected evaluation, or None."""
        best = None
        for record in self.metrics:
            if record.get("kind") == "val" and record.get("best"):
                best = record
        return best
