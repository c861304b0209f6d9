"""Preemption-safe runs: a stop signal ends a run after its current step with a verified checkpoint at that step and
exit code 75; ``--resume`` then finishes it exactly like an uninterrupted run. Also the ``--resume`` /
``--resume-if-exists`` contract and the refusal of non-finite hyper-parameters."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.training import loop
from taskbalance.training.checkpoint import find_checkpoint, verify_checkpoint
from taskbalance.training.hooks import FinalTest
from taskbalance.training.preemption import PREEMPTED_EXIT_CODE, StopRequest

STEPS = 80
TINY = [f"optim.iterations={STEPS}", f"optim.eval_every={STEPS}", "optim.checkpoint_every=100000", "log_every=1",
        "data.batch_size=2", "data.eval_batch_size=8", "data.options.num_scenes=1", "data.options.views_per_scene=4",
        "data.options.resolution=[24,32]", "diagnostics.every=0", "tasks=[depth,normals]"]


def _train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["train", "quick", *(a for s in TINY for a in ("--set", s)), "--no-progress", *args]
    )
    return result.exit_code, " ".join(result.output.split())


def _signal_at(monkeypatch: pytest.MonkeyPatch, step: int, signum: int) -> None:
    """Send ``signum`` to this process while the run takes step ``step`` (as a cluster would, mid-step)."""
    advance = loop.Loop._advance

    def advance_and_signal(self: loop.Loop) -> bool:
        if self.state.step + 1 == step:
            os.kill(os.getpid(), signum)
        return advance(self)

    monkeypatch.setattr(loop.Loop, "_advance", advance_and_signal)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigterm_checkpoints_the_current_step_and_resume_finishes_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    code, text = _train("--out", str(whole))
    assert code == 0, text

    with monkeypatch.context() as patch:
        _signal_at(patch, 30, signal.SIGTERM)
        code, text = _train("--out", str(stopped))
    assert code == PREEMPTED_EXIT_CODE, text
    assert "stopped by SIGTERM after step 30" in text and f"taskbalance train --resume --out {stopped}" in text
    last = find_checkpoint(stopped / "checkpoints", "last")
    assert last is not None and last.step == 30 and verify_checkpoint(last.path) is None
    assert not (stopped / "results.json").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run

    code, text = _train("--out", str(stopped), "--resume")
    assert code == 0, text
    assert f"resuming {stopped} from step 30/{STEPS}" in text
    assert _records(stopped) == _records(whole)
    finals = [json.loads((run / "results.json").read_text()) for run in (whole, stopped)]
    assert finals[0]["metrics"] == finals[1]["metrics"] and finals[0]["meta"]["steps"] == STEPS


def test_stop_request_notes_its_signals_and_restores_the_previous_handlers():
    noted: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: noted.append(signum))
    try:
        with StopRequest([signal.SIGUSR1, signal.SIGUSR2]) as stop:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert stop.received == signal.SIGUSR1 and noted == []
        os.kill(os.getpid(), signal.SIGUSR1)
        assert noted == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize(("setting", "key"), [("optim.lr=inf", "optim.lr"), ("optim.lr=.nan", "optim.lr"),
                                              ("optim.weight_decay=-.inf", "optim.weight_decay"),
                                              ("optim.grad_clip=nan", "optim.grad_clip")])
def test_non_finite_hyper_parameters_are_refused_in_one_line(tmp_path: Path, setting: str, key: str):
    result = CliRunner().invoke(
        app, ["train", "quick", "--set", setting, "--out", str(tmp_path / "r"), "--no-progress"]
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and f"{key}: Input should be a finite number" in result.output
    assert not (tmp_path / "r").exists()


def test_stop_signals_are_validated(tmp_path: Path):
    result = CliRunner().invoke(
        app, ["train", "quick", "--set", "stop_signals=[SIGKILL]", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "'SIGKILL' is not a signal a run can catch" in result.output


def test_resume_needs_a_run_and_resume_if_exists_starts_or_continues_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    run = tmp_path / "run"
    code, text = _train("--out", str(run), "--resume")
    assert code == 1 and "holds no run to resume" in text and "--resume-if-exists" in text and not run.exists()
    monkeypatch.setattr(FinalTest, "after_train", lambda self: None)  # the training is what matters here
    with monkeypatch.context() as patch:
        _signal_at(patch, 5, signal.SIGUSR1)
        code, text = _train("--out", str(run), "--resume-if-exists", "--set", f"optim.iterations={10}")
    assert code == PREEMPTED_EXIT_CODE and "stopped by SIGUSR1 after step 5" in text
    code, text = _train("--out", str(run), "--resume-if-exists", "--set", f"optim.iterations={10}")
    assert code == 0 and f"resuming {run} from step 5/10" in text, text
