"""Validate a benchmark's dataset folder without modifying it: ``taskbalance protocol check NAME --root DIR``.

Reads every item of every split through the preset's own loader and collects each problem (missing or corrupt
file, wrong shape, value out of range) in the data package's :class:`~taskbalance.data.check.CheckReport`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from taskbalance.data import DataError
from taskbalance.data.check import CheckReport, Problem
from taskbalance.protocols.presets import protocol_preset


def check_protocol_data(name: str, root: Path | str, progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Check every item of the splits benchmark ``name`` reads from ``root`` (``val`` only where it selects on it)."""
    preset = protocol_preset(name)
    root = Path(root).expanduser()
    report = CheckReport(root, name, "protocol")
    splits = ("train", "val", "test") if preset.reporting.rule == "best_val" else ("train", "test")
    for split in splits:
        try:
            dataset = preset.load(split, root, 0)
        except DataError as error:
            report.problems.append(Problem(f"{root} ({split})", str(error)))
            continue
        read = getattr(dataset, "load_sample", dataset.__getitem__)
        total = len(dataset)
        for index in range(total):
            try:
                read(index)
            except DataError as error:
                report.problems.append(Problem(f"{split}[{index}]", str(error)))
            report.samples += 1
            if progress is not None:
                progress(index + 1, total)
    return report
