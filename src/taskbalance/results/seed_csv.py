"""The per-seed CSV of a study (one row per run of its results table) and the Markdown table rendered from it.

Columns: ``arm`` (the table's row label: ``Single-task`` for each seed's composed single-task baseline, ``uniform``,
``grid search`` for the grid point selected on validation, each method), ``seed``, one column per task named
``<task>.<metric> ↑`` or ``↓`` (the task's primary metric and its direction), then ``delta_m_mean`` (Δm against the
single-task mean over seeds) and ``delta_m_per_seed`` (against the same seed's single-task runs), both in percent.
Grid points that were not selected are not rows (their runs keep their ``results.json``).

:func:`render_seed_csv` rebuilds the runs from the CSV and renders them with the same code as the report
(:func:`~taskbalance.results.results_table` and :func:`~taskbalance.results.to_markdown`), so the README's table can
be checked against a committed CSV.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

from taskbalance.atomic import atomic_write_text
from taskbalance.results.arms import Arm, Seed
from taskbalance.results.baseline import BASELINE_NAME
from taskbalance.results.errors import ResultsError
from taskbalance.results.render import csv_table, to_markdown
from taskbalance.results.schema import RunResult
from taskbalance.results.table import BaselineMode, ResultsTable, Row, results_table

#: File name of the per-seed CSV beside a study's report.
SEED_CSV = "per_seed.csv"
#: Δm columns, per single-task reference.
DELTA_COLUMNS: dict[BaselineMode, str] = {"mean": "delta_m_mean", "per-seed": "delta_m_per_seed"}
_METRIC = re.compile(r"^(?P<task>[^.\s]+)\.(?P<metric>\S+) (?P<arrow>[↑↓])$")


def seed_csv_text(arms: Sequence[Arm], baseline: Arm) -> str:
    """The CSV of ``arms`` and the single-task ``baseline`` (see the module notes), one row per (arm, seed)."""
    tables = {mode: results_table(arms, baseline, baseline_mode=mode, reference=None) for mode in DELTA_COLUMNS}
    columns = tables["mean"].columns
    headers = ["arm", "seed", *(f"{c.task}.{c.metric} {c.arrow}" for c in columns), *DELTA_COLUMNS.values()]
    lines = []
    for arm in [Arm(BASELINE_NAME, baseline.runs), *arms]:
        rows: dict[BaselineMode, Row] = {}
        for mode, table in tables.items():
            row = table.rows[0] if arm.name == BASELINE_NAME else table.row(arm.name)
            assert row is not None, arm.name  # results_table makes a row of every arm
            rows[mode] = row
        for seed in arm.seeds:
            run = arm.runs[seed]
            lines.append([arm.name, "" if seed is None else str(seed),
                          *(repr(run.metrics[c.task][c.metric]) for c in columns),
                          *(repr(rows[mode].seed_delta_m[seed]) for mode in DELTA_COLUMNS)])
    return csv_table(headers, lines)


def write_seed_csv(path: str | os.PathLike[str], arms: Sequence[Arm], baseline: Arm) -> Path:
    """Write :func:`seed_csv_text` atomically."""
    return atomic_write_text(path, seed_csv_text(arms, baseline))


def _seed(text: str) -> Seed:
    return int(text) if text.isdigit() else (text or None)


def read_seed_csv(path: str | os.PathLike[str]) -> tuple[list[Arm], Arm]:
    """The arms and the single-task baseline of a per-seed CSV, as runs with one primary metric per task.

    Raises:
        ResultsError: the file is missing, a metric column or value is malformed, or there is no single-task row.
    """
    source = Path(path)
    try:
        reader = csv.DictReader(io.StringIO(source.read_text(encoding="utf-8")))
        records = list(reader)
    except OSError as error:
        raise ResultsError(f"cannot read {source}: {error}") from None
    fields = reader.fieldnames or []
    matches = [(name, _METRIC.match(name)) for name in fields if name not in ("arm", "seed", *DELTA_COLUMNS.values())]
    if not matches or any(match is None for _, match in matches) or "arm" not in fields or "seed" not in fields:
        raise ResultsError(f"{source}: expected columns arm, seed, <task>.<metric> ↑|↓ ..., got {', '.join(fields)}")
    metrics = [(name, match) for name, match in matches if match is not None]
    runs: dict[str, dict[Seed, RunResult]] = {}
    for line, record in enumerate(records, start=2):
        try:
            values = {m["task"]: (m["metric"], m["arrow"] == "↑", float(record[name])) for name, m in metrics}
        except (TypeError, ValueError):
            raise ResultsError(f"{source} line {line}: a metric value is not a number") from None
        arm = record["arm"]
        runs.setdefault(arm, {})[_seed(record["seed"])] = RunResult(
            name=arm, method=arm, kind="stl" if arm == BASELINE_NAME else "mtl", tasks=list(values),
            metrics={t: {metric: value} for t, (metric, _, value) in values.items()},
            primary={t: metric for t, (metric, _, _) in values.items()},
            higher_is_better={t: higher for t, (_, higher, _) in values.items()}, meta={"seed": _seed(record["seed"])})
    if BASELINE_NAME not in runs:
        raise ResultsError(f"{source} has no {BASELINE_NAME!r} rows: the baseline is needed")
    return [Arm(name, members) for name, members in runs.items() if name != BASELINE_NAME], Arm(
        BASELINE_NAME, runs[BASELINE_NAME]
    )


def seed_csv_table(path: str | os.PathLike[str], baseline_mode: BaselineMode = "mean") -> ResultsTable:
    """The results table of a per-seed CSV (paired comparison with uniform), as the report builds it."""
    arms, baseline = read_seed_csv(path)
    return results_table(arms, baseline, reference="uniform", baseline_mode=baseline_mode)


def render_seed_csv(path: str | os.PathLike[str], baseline_mode: BaselineMode = "mean") -> str:
    """The Markdown table (mean ± sd, n, Δm's interval, paired difference with uniform, notes) of a per-seed CSV:
    what the README's standard-study block holds."""
    return to_markdown(seed_csv_table(path, baseline_mode))
