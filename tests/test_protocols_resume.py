"""A protocol run is the loop core with checkpoints: stopped after its first epoch, it resumes from that checkpoint
and reports exactly what the uninterrupted run reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from taskbalance.protocols.presets import protocol_preset
from taskbalance.protocols.runner import HISTORY_FILENAME, run_protocol
from taskbalance.training.checkpoint import find_checkpoint
from taskbalance.training.hooks import Checkpointing


def test_a_protocol_run_resumes_from_its_epoch_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    torch.set_num_threads(1)
    preset = protocol_preset("multimnist", cpu=True)
    assert preset.schedule.epochs == 2
    straight = run_protocol(preset, method="famo", out=tmp_path / "straight", seed=1)
    save = Checkpointing.after_step

    def killed_after_the_first_epoch(self: Checkpointing) -> None:
        save(self)
        if self.loop.state.epoch == 1 and self.loop.outcome.epoch_done:
            raise KeyboardInterrupt  # killed once the first epoch's checkpoint is written

    with monkeypatch.context() as patch:
        patch.setattr(Checkpointing, "after_step", killed_after_the_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            run_protocol(preset, method="famo", out=tmp_path / "killed", seed=1)
    first = find_checkpoint(tmp_path / "killed" / "checkpoints", "last")
    assert first is not None and not (tmp_path / "killed" / "results.json").exists()
    resumed = run_protocol(preset, method="famo", out=tmp_path / "killed", seed=1, resume=True)
    assert len(resumed.history) == 2 and resumed.history == straight.history
    assert resumed.result == straight.result
    history = [json.loads((tmp_path / run / HISTORY_FILENAME).read_text()) for run in ("straight", "killed")]
    assert history[0] == history[1]
    assert find_checkpoint(tmp_path / "killed" / "checkpoints", "last").step == 2 * first.step  # two equal epochs


def test_protocol_run_resume_on_the_command_line_finishes_a_killed_method(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from taskbalance.cli.main import app
    from taskbalance.results.schema import load_run_result

    torch.set_num_threads(1)
    command = ["protocol", "run", "multimnist", "--cpu", "--no-stl", "-m", "uniform", "--seed", "1"]
    straight = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "straight")])
    assert straight.exit_code == 0, straight.output
    save = Checkpointing.after_step

    def killed_after_the_first_epoch(self: Checkpointing) -> None:
        save(self)
        if self.loop.state.epoch == 1 and self.loop.outcome.epoch_done:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Checkpointing, "after_step", killed_after_the_first_epoch)
        killed = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "killed")])
    assert killed.exit_code != 0 and not (tmp_path / "killed" / "uniform" / "results.json").exists()
    first = find_checkpoint(tmp_path / "killed" / "uniform" / "checkpoints", "last")
    steps: list[int] = []

    def counted(self: Checkpointing) -> None:
        steps.append(self.loop.state.step)
        save(self)

    with monkeypatch.context() as patch:
        patch.setattr(Checkpointing, "after_step", counted)
        resumed = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "killed"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert len(steps) == first.step  # only the second epoch was trained
    assert find_checkpoint(tmp_path / "killed" / "uniform" / "checkpoints", "last").step == 2 * first.step
    results = [load_run_result(tmp_path / run / "uniform" / "results.json") for run in ("straight", "killed")]
    assert results[0].metrics == results[1].metrics
