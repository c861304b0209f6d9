"""CLI command ``doctor``: diagnose runs' gradient imbalance and recommend a method, or check the doctor on a study."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from taskbalance.cli.failure import fail

console = Console()

REPORT_NAME = "doctor.md"
FIGURE_NAME = "doctor.png"


def _is_run(path: Path) -> bool:
    from taskbalance.plots.diagnostics import DIAGNOSTICS_FILE

    return (path / "config.yaml").is_file() or (path / DIAGNOSTICS_FILE).is_file()


def _run(path: Path, steps: int | None, write: bool, quiet: bool) -> dict[str, Any]:
    from taskbalance.atomic import atomic_write_text
    from taskbalance.doctor import compute_signals, diagnose, read_records
    from taskbalance.doctor.figure import diagnosis_figure
    from taskbalance.doctor.render import diagnosis_dict, diagnosis_markdown, diagnosis_rich
    from taskbalance.doctor.rules import method_descriptions

    records = read_records(path, steps)
    diagnosis = diagnose(compute_signals(records))
    rec = diagnosis.recommendation
    descriptions = method_descriptions((rec.method, *rec.alternatives))
    if write:
        diagnosis_figure(records, path / FIGURE_NAME)
        atomic_write_text(path / REPORT_NAME, diagnosis_markdown(diagnosis, path, steps, descriptions, FIGURE_NAME))
    if not quiet:
        console.print(diagnosis_rich(diagnosis, path, steps, descriptions))
        if write:
            console.print(f"wrote {path / REPORT_NAME} and {path / FIGURE_NAME}")
    return diagnosis_dict(diagnosis, path, steps, descriptions)


def _study(path: Path, steps: int | None, write: bool, quiet: bool) -> list[dict[str, Any]]:
    from taskbalance.atomic import atomic_write_text
    from taskbalance.doctor import check_studies
    from taskbalance.doctor.render import study_dict, study_markdown, study_rich
    from taskbalance.doctor.rules import RULE_METHODS, method_descriptions

    descriptions = method_descriptions(RULE_METHODS)
    reports = []
    for check in check_studies(path, steps):
        if write:
            atomic_write_text(check.root / REPORT_NAME, study_markdown(check, steps))
        if not quiet:
            console.print(study_rich(check, steps))
            if write:
                console.print(f"wrote {check.root / REPORT_NAME}")
        reports.append(study_dict(check, steps, descriptions))
    return reports


def doctor_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="run directories (with diagnostics.jsonl), or a study folder: "
            "then each seed's uniform run is diagnosed and checked against the study"
        ),
    ],
    steps: Annotated[
        int | None, typer.Option(min=1, help="use only the diagnostics logged at training steps <= N")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the reports as JSON (one object, or a list for several)")
    ] = False,
    write: Annotated[
        bool, typer.Option(help=f"write {REPORT_NAME} (and {FIGURE_NAME} for a run) beside each run or study")
    ] = True,
) -> None:
    """Name a run's gradient imbalance (norm shares and their spread, conflicts, tasks at risk) and recommend a
    registered method with the numbers that triggered it; on a study folder, report how well that advice agrees
    with what the study measured."""
    from taskbalance.atomic import WriteError
    from taskbalance.doctor import DoctorError
    from taskbalance.jsonlines import json_safe

    reports: list[dict[str, Any]] = []
    try:
        for path in paths:
            if _is_run(path):
                reports.append(_run(path, steps, write, as_json))
            elif path.is_dir():
                reports.extend(_study(path, steps, write, as_json))
            else:
                raise DoctorError(f"{path} does not exist" if not path.exists() else f"{path} is not a folder")
    except (DoctorError, WriteError) as error:
        raise fail(error) from None
    if as_json:
        typer.echo(json.dumps(json_safe(reports[0] if len(reports) == 1 else reports), indent=2))


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to the main app."""
    app.command("doctor")(doctor_command)
