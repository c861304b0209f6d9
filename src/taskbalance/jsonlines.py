"""JSON documents and append-only JSON-lines logs, written atomically (no NaN: non-finite floats become null).

Shared by the run directories of training and by the figures of :mod:`taskbalance.plots`, which read the logs
without importing the training package.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from taskbalance.atomic import atomic_write_text


def json_safe(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically write a JSON document."""
    atomic_write_text(path, json.dumps(json_safe(data), indent=2) + "\n")


class JsonLines:
    """An append-only JSON-lines log whose records carry a ``step``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record and flush it to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(json_safe(record)) + "\n")
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
