"""Write the study report: compute it (:mod:`~taskbalance.study.report.compute`), print it, draw its figures and
write its files.

Written to ``<study>/report.md`` (plus ``table.csv``, ``table.tex``, ``per_seed.csv``, ``report.json``,
``radar.png``, ``figures/*.png``) and printed. The study passes its runs (anything with the attributes of
:class:`~taskbalance.study.report.model.ReportRun`) and, optionally, the description of its arms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from taskbalance.atomic import atomic_write_text
from taskbalance.results import radar_chart, to_csv, to_latex
from taskbalance.results.seed_csv import SEED_CSV, write_seed_csv
from taskbalance.study.report.compute import compute_report
from taskbalance.study.report.model import ReportRun, ReportSpec, StudyReport
from taskbalance.study.report.render import print_report, report_data, report_markdown
from taskbalance.training.rundir import RunDir, write_json


def _draw_figures(spec: ReportSpec, report: StudyReport, out: Path) -> list[Path]:
    """The radar chart (three tasks or more) and the diagnostics figures of the MTL runs (seeds of an arm drawn as
    mean line and band)."""
    from taskbalance.plots import plot_runs

    table = report.table
    figures: list[Path] = []
    if len(table.columns) >= 3 and len(table.rows) > 1:
        figures.append(radar_chart(table, out / "radar.png"))
    diagnosed = [f.run for f in report.finished
                 if f.run.kind != "stl" and RunDir(out / f.run.name).diagnostics.path.is_file()]
    if spec.diagnostics_runs is not None:
        diagnosed = [r for r in diagnosed if r.arm in spec.diagnostics_runs]
    if diagnosed:
        figures += plot_runs([out / r.name for r in diagnosed], out / "figures", labels=[r.arm for r in diagnosed])
    return figures


def write_report(spec: ReportSpec, runs: Sequence[ReportRun], out: Path, console: Console | None = None,
                 draw_figures: bool = True, *, arms: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Build, print and save the report of every finished run of the study; returns its data.

    Args:
        runs: the study's planned runs (finished ones are read from ``out/<run.name>``).
        draw_figures: False keeps the figures already in ``out`` (nothing new was trained).
        arms: per arm what the study planned (``study.describe_arms``: arm, kind, method, options, length,
            batch_size, lr, dataset, data_options, arch, backbone, seeds); report.md states them.

    Raises:
        ResultsError: no seed of the reference variant has finished all its single-task runs.
    """
    console = console or Console()
    report = compute_report(spec, runs, out, arms)
    print_report(report, console)
    if draw_figures:
        figures = _draw_figures(spec, report, out)
        figures += [p for p in sorted(out.glob("figures/*.png")) if p not in figures]  # e.g. the study's curves
    else:
        figures = sorted([*out.glob("radar.png"), *out.glob("figures/*.png")])
    atomic_write_text(out / "table.csv", to_csv(report.table))
    atomic_write_text(out / "table.tex", to_latex(report.table))
    write_seed_csv(out / SEED_CSV, report.table_arms, report.baseline)
    atomic_write_text(out / "report.md", report_markdown(report, figures, out) + "\n")
    data = report_data(report, figures)
    write_json(out / "report.json", json.loads(json.dumps(data, default=str)))
    return data
