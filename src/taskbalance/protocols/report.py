"""The papers' table of a benchmark: one row per run, one column per metric of the paper (e.g. NYUv2: mIoU, Pix
Acc, Abs Err, Rel Err, normal Mean, Median, 11.25, 22.5, 30) and Δm% (lower is better), as Markdown or CSV."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from taskbalance.protocols.delta import MetricColumn, protocol_delta_m
from taskbalance.results import ResultsError, RunResult
from taskbalance.results.render import csv_table, format_delta, format_value, markdown_table

DELTA_HEADER = "Δm% ↓"


@dataclass(frozen=True)
class ProtocolTable:
    """Columns, and per run its name, metric values in column order and Δm (None without a baseline)."""

    columns: tuple[MetricColumn, ...]
    rows: tuple[tuple[str, tuple[float, ...], float | None], ...]

    def headers(self) -> list[str]:
        """``Method``, each column with its ↑/↓ arrow, then Δm."""
        return ["Method"] + [f"{c.header} {'↑' if c.higher_is_better else '↓'}" for c in self.columns] + [DELTA_HEADER]


def protocol_table(runs: Sequence[RunResult], columns: Sequence[MetricColumn],
                   baseline: Mapping[str, Mapping[str, float]] | None = None) -> ProtocolTable:
    """The table of ``runs`` (their reported metrics) with Δm against ``baseline`` when given.

    Raises:
        ResultsError: a run lacks a column's metric.
    """
    rows = []
    for run in runs:
        try:
            values = tuple(float(run.metrics[c.task][c.metric]) for c in columns)
        except KeyError:
            missing = next(c for c in columns if c.metric not in run.metrics.get(c.task, {}))
            raise ResultsError(f"run {run.name!r} has no {missing.metric!r} for task {missing.task!r}") from None
        delta = protocol_delta_m(run.metrics, baseline, columns) if baseline is not None else None
        rows.append((run.name, values, delta))
    return ProtocolTable(tuple(columns), tuple(rows))


def _cells(table: ProtocolTable) -> list[list[str]]:
    return [[name, *(format_value(v) for v in values), "—" if delta is None else format_delta(delta)]
            for name, values, delta in table.rows]


def to_markdown(table: ProtocolTable) -> str:
    """GitHub Markdown with the papers' rounding (2 decimals, 4 below 1)."""
    return markdown_table(table.headers(), _cells(table))


def to_csv(table: ProtocolTable) -> str:
    """CSV with full-precision values (empty Δm without a baseline)."""
    return csv_table(table.headers(), ([name, *(repr(v) for v in values), "" if delta is None else repr(delta)]
                                       for name, values, delta in table.rows))
