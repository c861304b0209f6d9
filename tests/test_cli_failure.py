"""One failure path for every command (cli/failure.py): one unwrapped line on stderr, the exit status of its class."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import taskbalance.cli as cli_package
from taskbalance.cli import failure
from taskbalance.cli.main import app
from taskbalance.training.preemption import PREEMPTED_EXIT_CODE

CLI_DIR = Path(cli_package.__file__).parent


def test_fail_prints_one_plain_unwrapped_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    message = "missing ['semseg'] and [bold]not markup[/bold]; " + "a long explanation " * 12
    exit_ = failure.fail(ValueError(message))
    assert isinstance(exit_, typer.Exit) and exit_.exit_code == failure.ERROR == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {message}\n"  # one line however wide, brackets kept as typed
    assert failure.fail("stopped by SIGTERM", failure.PREEMPTED, "stopped").exit_code == 75
    assert capsys.readouterr().err == "stopped: stopped by SIGTERM\n"


def test_the_codes_of_the_scheme() -> None:
    assert (failure.ERROR, failure.USAGE, failure.PREEMPTED, failure.INTERRUPTED) == (1, 2, 75, 130)
    assert failure.PREEMPTED == PREEMPTED_EXIT_CODE
    for code in ("0 success", "1 error", "2 usage", "75 stopped", "130 interrupted"):
        assert code in failure.EXIT_STATUS_HELP


def test_the_main_help_states_the_exit_status() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=400)
    assert result.exit_code == 0 and "Exit status: 0 success, 1 error" in " ".join(result.output.split())


def test_errors_go_to_stderr_with_their_class(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["results", "table", str(tmp_path / "nowhere")])
    assert missing.exit_code == failure.ERROR and missing.stdout == ""
    assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1
    no_config = runner.invoke(app, ["train"])
    assert no_config.exit_code == failure.USAGE and no_config.stdout == "" and "--list" in no_config.stderr
    protocol = runner.invoke(app, ["study", "nyuv2-mtan", "--out", str(tmp_path / "s")])
    assert protocol.exit_code == failure.USAGE and "taskbalance protocol run" in protocol.stderr
    doctor = runner.invoke(app, ["doctor", str(tmp_path / "nowhere")])
    assert doctor.exit_code == failure.ERROR and doctor.stderr == f"error: {tmp_path / 'nowhere'} does not exist\n"
    unknown = runner.invoke(app, ["data", "info", "imagenet"])
    assert unknown.exit_code == failure.ERROR and unknown.stderr.startswith("error: ") and unknown.stdout == ""


def test_no_command_module_has_a_failure_helper_of_its_own() -> None:
    for path in sorted(CLI_DIR.glob("*.py")):
        names = {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
        assert not {"_fail", "fail"} & names or path.name == "failure.py", path.name
