"""The ``results.json`` of a run (schema in docs/contracts.md): model, atomic save, load, and discovery of runs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from taskbalance.atomic import atomic_write_text
from taskbalance.results.errors import ResultsError

#: File name of a run's final evaluation inside its run directory.
RESULTS_FILENAME = "results.json"
#: Marks a run folder a study set aside because it was trained under another config (study/staleness.py).
STALE_MARK = ".stale-"


class RunResult(BaseModel):
    """One run's final evaluation.

    Attributes:
        name: row label in tables (e.g. ``uniform``, ``Single-task``).
        method: balancing method (``uniform``, ``avgnorm``, ..., ``stl`` for single-task runs).
        kind: ``mtl`` (one model, several tasks) or ``stl`` (single-task run(s)).
        tasks: the evaluated tasks.
        metrics: task → metric name → value (percent for mIoU/odsF/maxF, metres for depth, degrees for normals).
        primary: task → the metric that enters Δm.
        higher_is_better: task → direction of its primary metric.
        mean_weights: task → average loss weight over training (empty when not tracked).
        selection: how the reported checkpoint was chosen (``val`` or ``last (no validation split)``).
        meta: free-form provenance (dataset, backbone, seed, config, composed-from runs, ...).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    method: str
    kind: Literal["mtl", "stl"]
    tasks: list[str] = Field(min_length=1)
    metrics: dict[str, dict[str, float]]
    primary: dict[str, str]
    higher_is_better: dict[str, bool]
    mean_weights: dict[str, float] = Field(default_factory=dict)
    selection: str = "val"
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RunResult:
        tasks = set(self.tasks)
        if len(tasks) != len(self.tasks):
            raise ValueError(f"tasks must be distinct, got {self.tasks}")
        for field in ("metrics", "primary", "higher_is_better"):
            keys = set(getattr(self, field))
            if keys != tasks:
                raise ValueError(f"{field} covers tasks {sorted(keys)} but the run's tasks are {sorted(tasks)}")
        for task in self.tasks:
            if self.primary[task] not in self.metrics[task]:
                raise ValueError(
                    f"task {task!r}: primary metric {self.primary[task]!r} is not among its metrics "
                    f"{sorted(self.metrics[task])}"
                )
        return self

    def primary_values(self) -> dict[str, float]:
        """Task → value of its primary metric."""
        return {task: self.metrics[task][self.primary[task]] for task in self.tasks}


def save_run_result(result: RunResult, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as JSON atomically. ``path`` is a ``.json`` file or a run directory (→ ``results.json``)."""
    target = Path(path)
    if target.suffix.lower() != ".json":
        target = target / RESULTS_FILENAME
    return atomic_write_text(target, result.model_dump_json(indent=2) + "\n")


def _parse(payload: Any, source: Path) -> list[RunResult]:
    items = payload if isinstance(payload, list) else [payload]
    runs = []
    for i, item in enumerate(items):
        try:
            runs.append(RunResult.model_validate(item))
        except ValidationError as error:
            where = f"{source}" if len(items) == 1 else f"{source} (entry {i})"
            raise ResultsError(f"{where} is not a valid run result: {error}") from None
    return runs


def load_results_file(path: str | os.PathLike[str]) -> list[RunResult]:
    """The runs stored in a JSON file: one run object, or a list of them (a saved results collection)."""
    source = Path(path)
    try:
        payload = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{source} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"cannot read {source}: {error}") from None
    return _parse(payload, source)


def load_run_result(path: str | os.PathLike[str]) -> RunResult:
    """The single run in ``path`` (a run directory holding ``results.json``, or a JSON file of one run)."""
    source = Path(path)
    if source.is_dir():
        source = source / RESULTS_FILENAME
    runs = load_results_file(source)
    if len(runs) != 1:
        raise ResultsError(f"{source} holds {len(runs)} runs; expected exactly one")
    return runs[0]


def save_results(runs: Iterable[RunResult], path: str | os.PathLike[str]) -> Path:
    """Write several runs as one JSON list (a results collection) atomically."""
    payload = [json.loads(run.model_dump_json()) for run in runs]
    return atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def load_runs(paths: Iterable[str | os.PathLike[str]]) -> list[RunResult]:
    """Collect runs from run directories, folders of run directories, and JSON files (one run or a list).

    A directory holding ``results.json`` is one run; any other directory (a study: ``<arm>/seed-<n>/``) contributes
    every ``results.json`` below it, in path order, except in folders a study set aside as stale (``*.stale-*``).
    """
    runs: list[RunResult] = []
    for entry in map(Path, paths):
        if entry.is_dir() and not (entry / RESULTS_FILENAME).is_file():
            found = sorted(f for f in entry.rglob(RESULTS_FILENAME)
                           if not any(STALE_MARK in part for part in f.relative_to(entry).parts))
            if not found:
                raise ResultsError(f"{entry} holds no {RESULTS_FILENAME} and no run directory with one")
            runs.extend(run for file in found for run in load_results_file(file))
        else:
            runs.extend(load_results_file(entry / RESULTS_FILENAME if entry.is_dir() else entry))
    return runs
