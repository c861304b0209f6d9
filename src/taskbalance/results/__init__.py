"""Run results: the ``results.json`` schema, single-task baselines, Δm, arms over seeds and their statistics,
paper-style tables, verdicts on the paper's claims and radar charts.

May import: the top-level helpers (``atomic``, ``conventions``, ``records``); no model, data or training code.
"""

from taskbalance.results.arms import Arm, baseline_arm, comparability_warnings, group_runs, seed_of
from taskbalance.results.baseline import BASELINE_NAME, compose_baseline
from taskbalance.results.delta import delta_m, task_improvements
from taskbalance.results.errors import ResultsError
from taskbalance.results.radar import radar_chart
from taskbalance.results.render import FORMATS, render_text, to_csv, to_latex, to_markdown, to_rich
from taskbalance.results.schema import (
    RESULTS_FILENAME,
    RunResult,
    load_results_file,
    load_run_result,
    load_runs,
    save_results,
    save_run_result,
)
from taskbalance.results.stats import INTERVAL_LABEL, Summary, paired_difference, summarize
from taskbalance.results.table import Column, ResultsTable, Row, results_table
from taskbalance.results.verdicts import Verdict, judge_claims

__all__ = [
    "Arm",
    "BASELINE_NAME",
    "Column",
    "FORMATS",
    "INTERVAL_LABEL",
    "RESULTS_FILENAME",
    "ResultsError",
    "ResultsTable",
    "Row",
    "RunResult",
    "Summary",
    "Verdict",
    "baseline_arm",
    "comparability_warnings",
    "compose_baseline",
    "delta_m",
    "group_runs",
    "judge_claims",
    "load_results_file",
    "load_run_result",
    "load_runs",
    "paired_difference",
    "radar_chart",
    "render_text",
    "results_table",
    "save_results",
    "save_run_result",
    "seed_of",
    "summarize",
    "task_improvements",
    "to_csv",
    "to_latex",
    "to_markdown",
    "to_rich",
]
