"""The papers' table of a benchmark: one row per run, one column per metric of the paper (e.g. NYUv2: mIoU, Pix
Acc, Abs Err, Rel Err, normal Mean, Median, 11.25, 22.5, 30) and Δm% in the AvgNorm paper's convention (Eq. 5
sign, higher is better), as Markdown or CSV; and the method papers' reported Δm, converted to that convention.

The CPU versions (``protocol run --cpu``, presets named ``<benchmark>-cpu``) train on a few stand-in samples: their
report's title and table header say :data:`STAND_IN_NOTE`, so a pipeline check is never read as a result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taskbalance.protocols.delta import REPORTED_DELTA_M, MetricColumn, protocol_delta_m
from taskbalance.results import ResultsError, RunResult
from taskbalance.results.render import DELTA_HEADER, csv_table, format_delta, format_value, markdown_table

#: How the Δm of these tables relates to the method papers' numbers.
CONVENTION_NOTE = ("Δm% over every metric column, in the AvgNorm paper's convention (Eq. 5 sign: higher is better); "
                   "the method papers print the opposite sign (lower is better): their numbers are negated here.")
#: What the title and the table of a stand-in run say.
STAND_IN_NOTE = "stand-in data: a pipeline check, not comparable with the papers"


def is_stand_in(benchmark: str) -> bool:
    """Whether ``benchmark`` names a CPU version on stand-in data (``nyuv2-mtan-cpu``, ...)."""
    return benchmark.endswith("-cpu")


@dataclass(frozen=True)
class ProtocolTable:
    """Columns, and per run its name, metric values in column order and Δm (None without a baseline);
    ``stand_in``: the runs trained on stand-in data (the first header says so)."""

    columns: tuple[MetricColumn, ...]
    rows: tuple[tuple[str, tuple[float, ...], float | None], ...]
    stand_in: bool = False

    def headers(self) -> list[str]:
        """``Method`` (with :data:`STAND_IN_NOTE` on stand-in data), each column with its ↑/↓ arrow, then Δm."""
        first = f"Method ({STAND_IN_NOTE})" if self.stand_in else "Method"
        return [first] + [f"{c.header} {'↑' if c.higher_is_better else '↓'}" for c in self.columns] + [DELTA_HEADER]


def protocol_table(runs: Sequence[RunResult], columns: Sequence[MetricColumn],
                   baseline: Mapping[str, Mapping[str, float]] | None = None, stand_in: bool = False) -> ProtocolTable:
    """The table of ``runs`` (their reported metrics) with Δm against ``baseline`` when given; ``stand_in``: the
    runs trained on stand-in data.

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
    return ProtocolTable(tuple(columns), tuple(rows), stand_in)


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


def reported_section(benchmark: str) -> str:
    """Markdown: the Δm the method papers report on ``benchmark`` (``nyuv2-mtan``, ``cityscapes``, ``celeba``; a
    ``-cpu`` suffix is ignored), as printed and converted, with the conversion stated; empty when none is known."""
    reported = REPORTED_DELTA_M.get(benchmark.removesuffix("-cpu"), ())
    if not reported:
        return ""
    rows = [[r.method, f"{r.printed:+.2f}", format_delta(r.converted), r.source] for r in reported]
    caveat = " on the real data, not comparable with the stand-in table above" if is_stand_in(benchmark) else ""
    return (f"Reported by the method papers{caveat} (Δm% as printed, lower is better; converted = −printed, higher is "
            "better):\n\n"
            + markdown_table(["Method", "Δm% ↓ as printed", f"{DELTA_HEADER} converted", "Source"], rows))


def report_markdown(title: str, table: ProtocolTable, benchmark: str) -> str:
    """The benchmark's ``report.md``: the table, the convention note and the papers' converted numbers; a stand-in
    run's title ends with :data:`STAND_IN_NOTE`."""
    if is_stand_in(benchmark):
        title = f"{title} ({STAND_IN_NOTE})"
    parts = [f"# {title}", to_markdown(table), f"_{CONVENTION_NOTE}_", reported_section(benchmark)]
    return "\n\n".join(p.rstrip("\n") for p in parts if p) + "\n"
