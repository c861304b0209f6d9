"""The typed JSON-lines records: written through one writer, read back by kind."""

from __future__ import annotations

from pathlib import Path

from taskbalance.jsonlines import JsonLines
from taskbalance.records import (
    DiagnosticsRecord,
    TrainRecord,
    ValidationRecord,
    append_record,
    read_metrics,
    read_validation,
)


def test_validation_reads_only_the_evaluations_of_a_mixed_log(tmp_path: Path):
    log = JsonLines(tmp_path / "metrics.jsonl")
    append_record(log, TrainRecord(step=1, loss=2.0, losses={"a": 2.0}, weights={"a": 1.0}))
    append_record(log, ValidationRecord(step=2, metrics={"a": {"acc": 0.5}}, primary={"a": "acc"}, best=True))
    append_record(log, TrainRecord(step=3, loss=1.0))
    assert [type(r).__name__ for r in read_metrics(tmp_path)] == ["TrainRecord", "ValidationRecord", "TrainRecord"]
    validation = read_validation(tmp_path)
    assert [(r.step, r.best, r.primary_values()) for r in validation] == [(2, True, {"a": 0.5})]
    assert read_validation(tmp_path / "metrics.jsonl") == validation
    assert read_validation(tmp_path / "none") == []


def test_shares_are_each_tasks_part_of_the_sum_or_none():
    record = DiagnosticsRecord(step=1, tasks=["a", "b"], weighted_grad_norms={"a": 1.0, "b": 3.0},
                               grad_norms={"a": -2.0, "b": 2.0})
    assert record.shares("weighted_grad_norms") == {"a": 0.25, "b": 0.75}
    assert record.shares("grad_norms") == {"a": 0.5, "b": 0.5}  # magnitudes
    assert record.shares("weighted_grad_norms", ["b"]) == {"b": 1.0}
    assert record.shares("weighted_grad_norms", ["a", "c"]) is None  # a task without a value
    assert DiagnosticsRecord(step=1, tasks=["a"], losses={"a": 0.0}).shares("losses") is None  # a zero sum
