"""A benchmark's table in one call: single-task runs when needed, one run per method, and ``report.md`` /
``report.csv`` with the papers' columns. A run whose ``results.json`` exists is read back, not re-run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from taskbalance.atomic import atomic_write_text
from taskbalance.protocols.presets import ProtocolPreset
from taskbalance.protocols.report import ProtocolTable, is_stand_in, protocol_table, report_markdown, to_csv
from taskbalance.protocols.runner import run_protocol
from taskbalance.results import RESULTS_FILENAME, RunResult, compose_baseline, load_run_result


def _run(out: Path, **kwargs: Any) -> RunResult:
    if (out / RESULTS_FILENAME).is_file():
        return load_run_result(out / RESULTS_FILENAME)
    return run_protocol(out=out, **kwargs).result


def run_suite(preset: ProtocolPreset, methods: Sequence[str], out: Path, root: Path | None = None,
              method_options: Mapping[str, Mapping[str, Any]] | None = None, single_task: bool | None = None,
              seed: int = 0, device: str = "cpu", resume: bool = False) -> ProtocolTable:
    """Run ``methods`` on ``preset`` into ``out/<method>`` and write ``out/report.md`` and ``out/report.csv``.

    Args:
        single_task: run one single-task model per task (``out/stl-<task>``) and use them as the Δm baseline
            (its first row); default: only when the preset has no hard-coded baseline.
        method_options: method name → balancer options.
        resume: continue each run from its last epoch checkpoint (see :func:`run_protocol`).
    """
    tasks = tuple(preset.load("train", root, seed).info.tasks)
    common = {"preset": preset, "root": root, "seed": seed, "device": device, "resume": resume}
    runs: list[RunResult] = []
    baseline = preset.baseline
    if single_task or (single_task is None and baseline is None):
        stl = [_run(out / f"stl-{task}", tasks=[task], single_task=True, **common) for task in tasks]
        composed = compose_baseline(stl)
        baseline = composed.metrics
        runs.append(composed)
    for method in methods:
        options = dict((method_options or {}).get(method, {}))
        runs.append(_run(out / method, method=method, method_options=options, baseline=baseline, **common))
    table = protocol_table(runs, preset.columns(tasks), baseline, stand_in=is_stand_in(preset.name))
    atomic_write_text(out / "report.md", report_markdown(preset.description, table, preset.name))
    atomic_write_text(out / "report.csv", to_csv(table))
    return table
