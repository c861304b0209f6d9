"""Issue 11 items 8-10 through the loop and the CLI: damaged checkpoints, resuming from the run's own config, the
run lock, reuse of a run that never stepped, TensorBoard at the resume point, where runs may be written."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.training import loop
from taskbalance.training.checkpoint import CheckpointError, find_checkpoint
from taskbalance.training.config import dump_config
from taskbalance.training.presets import load_config
from taskbalance.training.rundir import RunDir, RunDirError, RunLockedError, run_dir_for
from test_training_loop import _interrupt_at, config, run, stand_ins  # noqa: F401  (stand_ins is a fixture)

runner = CliRunner()


def _has(output: str, text: str) -> bool:
    """Whether ``text`` is in the CLI output, whatever the console's line wrapping (it may break inside a path)."""
    return "".join(text.split()) in "".join(output.split())


def invoke(*args: str):
    """The CLI in a wide terminal, so that messages are not wrapped."""
    return runner.invoke(app, list(args), env={"COLUMNS": "500"})


def _killed_run(monkeypatch, out: Path, at: int = 7, **extra) -> None:
    """A run stopped after step ``at`` (checkpoints every 2 steps: the last two are kept)."""
    with monkeypatch.context() as patch:
        _interrupt_at(patch, at)
        with pytest.raises(KeyboardInterrupt):
            run(config(**extra), out)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _train_steps(out: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    return [event.step for event in events.Scalars("train/loss")]


@pytest.mark.usefixtures("stand_ins")
def test_resume_falls_back_to_the_previous_checkpoint_when_the_last_is_damaged(monkeypatch, tmp_path):
    out = tmp_path / "r"
    _killed_run(monkeypatch, out)
    damaged = out / "checkpoints" / "last-00000006" / "model.safetensors"
    data = bytearray(damaged.read_bytes())
    data[300:364] = bytes(b ^ 0xFF for b in data[300:364])  # 64 flipped bytes
    damaged.write_bytes(bytes(data))
    result = invoke("train", "--resume", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert _has(result.output, "model.safetensors is damaged") and _has(result.output, "last-00000004")
    assert _has(result.output, "from step 4/12") and (out / "results.json").is_file()


@pytest.mark.parametrize("file", ["last-00000002/state.pt", "last-00000002/model.safetensors"])
@pytest.mark.usefixtures("stand_ins")
def test_damage_without_a_previous_checkpoint_is_one_line_in_the_cli(monkeypatch, tmp_path, file):
    out = tmp_path / "r"
    _killed_run(monkeypatch, out, at=3)  # only the checkpoint of step 2 exists
    _truncate(out / "checkpoints" / file)
    result = invoke("train", "--resume", "--out", str(out), "--no-progress")
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert str(out / "checkpoints" / file) in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("stand_ins")
def test_truncated_pointer_resumes_from_the_newest_intact_checkpoint(monkeypatch, tmp_path):
    out = tmp_path / "r"
    _killed_run(monkeypatch, out)
    _truncate(out / "checkpoints" / "last.json")
    result = invoke("train", "--resume", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    assert _has(result.output, "last.json is damaged") and _has(result.output, "from step 6/12")


@pytest.mark.usefixtures("stand_ins")
def test_interrupt_hint_resumes_with_the_overrides_of_the_run(monkeypatch, tmp_path):
    out = tmp_path / "r"
    (tmp_path / "tiny.yaml").write_text(dump_config(config()))
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 5)
        result = invoke("train", str(tmp_path / "tiny.yaml"), "--set", "optim.lr=0.003", "--out", str(out),
                                     "--no-progress")
    assert result.exit_code == 130
    hint = result.output.split("continue with: ")[1].split()
    assert hint[:3] == ["taskbalance", "train", "--resume"]
    resumed = invoke(*hint[1:], "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert load_config(out / "config.yaml").optim.lr == 0.003
    assert _has(resumed.output, "from step 4/12")


def test_resume_without_config_needs_a_run_directory(tmp_path):
    result = invoke("train", "--resume", "--out", str(tmp_path))
    assert result.exit_code == 1 and _has(result.output, "not a run directory")


@pytest.mark.usefixtures("stand_ins")
def test_a_second_process_on_the_run_is_refused_naming_the_holder(monkeypatch, tmp_path):
    out = tmp_path / "r"
    _killed_run(monkeypatch, out)
    held = RunDir(out).lock()
    try:
        with pytest.raises(RunLockedError) as caught:
            run(config(), out, resume=True)
        message = str(caught.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "started" in message
        assert "\n" not in message
    finally:
        held.release()
    assert run(config(), out, resume=True).name == "tiny"  # released by the first holder, then by the run itself
    RunDir(out).lock().release()


@pytest.mark.usefixtures("stand_ins")
def test_a_run_that_stopped_before_its_first_step_is_reused(monkeypatch, tmp_path):
    out = tmp_path / "r"

    def failing_step(self, *args, **kwargs):
        raise MemoryError("out of memory in the first forward")

    with monkeypatch.context() as patch:
        patch.setattr(loop.Loop, "_train", failing_step)
        with pytest.raises(MemoryError):
            run(config(), out)
    assert (out / "config.yaml").is_file()
    assert (
        run(config(optim={"lr": 1e-2, "iterations": 8, "eval_every": 4, "checkpoint_every": 2}), out).meta["steps"] == 8
    )


@pytest.mark.usefixtures("stand_ins")
def test_tensorboard_keeps_the_step_of_the_resume_point(monkeypatch, tmp_path):
    out = tmp_path / "r"
    _killed_run(monkeypatch, out, at=5)  # checkpoint at step 4, steps 1-5 logged
    run(config(), out, resume=True)
    assert _train_steps(out) == list(range(1, 13))


def test_run_names_must_stay_inside_the_runs_folder(tmp_path):
    assert run_dir_for(tmp_path, "quick") == tmp_path / "quick"
    for name in ("../../x", "/tmp/x", "a/b", "..", ""):
        with pytest.raises(RunDirError, match="plain folder name"):
            run_dir_for(tmp_path, name)
    for name in ("../../x", "/tmp/escaped"):
        result = invoke("train", "quick", "--set", f"name={name}")
        assert result.exit_code == 1 and _has(result.output, "plain folder name")
    assert not Path("/tmp/escaped").exists()


@pytest.mark.usefixtures("stand_ins")
def test_a_folder_that_is_not_a_run_directory_is_refused(tmp_path):
    dataset = tmp_path / "nyud"
    (dataset / "images").mkdir(parents=True)
    (dataset / "gt_sets.txt").write_text("a\n")
    with pytest.raises(RunDirError, match="not a run directory"):
        run(config(), dataset)
    assert sorted(p.name for p in dataset.iterdir()) == ["gt_sets.txt", "images"]
    (tmp_path / "empty").mkdir()
    assert run(config(), tmp_path / "empty").name == "tiny"


def test_checkpoint_error_is_a_user_error_of_the_cli():
    from taskbalance.cli.train import _user_errors

    assert issubclass(CheckpointError, _user_errors()) and issubclass(RunLockedError, _user_errors())
    assert find_checkpoint(Path("/nonexistent"), "last") is None
