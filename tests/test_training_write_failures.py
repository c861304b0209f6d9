"""Write failures (a full disk, any OS error) while a run saves a checkpoint or a result: one line saying what failed,
where, and which checkpoint is intact; no temporary file or folder is left; the intact checkpoint resumes. Atomic
writes fsync the file before ``os.replace`` and the folder after it."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from torch import nn
from typer.testing import CliRunner

from taskbalance import atomic
from taskbalance.cli.main import app
from taskbalance.training import checkpoint as ckpt
from taskbalance.training.hooks import final

TINY = ["optim.iterations=12", "optim.eval_every=100", "optim.checkpoint_every=2", "log_every=1", "data.batch_size=2",
        "data.eval_batch_size=8", "data.options.num_scenes=1", "data.options.views_per_scene=4",
        "data.options.resolution=[24,32]", "diagnostics.every=0", "tasks=[depth,normals]"]


def _train(out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", "quick", *(a for s in TINY for a in ("--set", s)), "--no-progress",
                                      "--out", str(out), *args])
    return result.exit_code, result.output


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MB tmpfs (root only): room for two checkpoints of the tiny run, not three."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        pytest.skip(f"tmpfs mount not permitted here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False, timeout=60)


def test_full_disk_is_one_line_leaves_no_temporary_folder_and_the_previous_checkpoint_resumes(
    small_disk: Path, tmp_path: Path
):
    run = small_disk / "run"
    code, output = _train(run)
    assert code == 1
    assert output.count("\n") == 1 and "Traceback" not in output, output
    line = " ".join(output.split())
    assert "No space left on device" in line and "cannot write checkpoint last-" in line and "is intact" in line
    assert _hidden(run / "checkpoints") == []  # no staging folder, no temporary file
    intact = ckpt.find_checkpoint(run / "checkpoints", "last")
    assert intact is not None and f"last checkpoint {intact.path.name} (step {intact.step})" in line
    assert 0 < intact.step < 12

    moved = tmp_path / "moved"  # the same run on a disk with room: it resumes from the intact checkpoint
    shutil.copytree(run, moved)
    code, output = _train(moved, "--resume")
    assert code == 0, output
    assert f"from step {intact.step}/12" in " ".join(output.split()) and (moved / "results.json").is_file()


def test_enospc_while_saving_a_checkpoint_is_one_line_and_removes_the_staging_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    model = nn.Linear(4, 4)
    ckpt.save_checkpoint(tmp_path, "last", 1, model, {"step": 1})

    def full(path: Path, data: bytes) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full)
    with pytest.raises(ckpt.CheckpointWriteError) as caught:
        ckpt.save_checkpoint(tmp_path, "last", 2, model, {"step": 2})
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message
    assert f"cannot write checkpoint last-00000002 in {tmp_path}" in message
    assert "the last checkpoint last-00000001 (step 1)" in message and "is intact" in message
    assert _hidden(tmp_path) == [] and ckpt.find_checkpoint(tmp_path, "last").step == 1


def test_enospc_while_writing_the_results_is_one_line_naming_the_intact_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def full(result: object, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(final, "save_run_result", full)
    code, output = _train(tmp_path / "run")
    line = " ".join(output.split())
    assert code == 1 and output.count("\n") == 1, output
    assert f"cannot write {tmp_path / 'run' / 'results.json'}: No space left on device" in line
    assert f"last checkpoint last-00000012 (step 12) in {tmp_path / 'run' / 'checkpoints'} is intact" in line


def test_atomic_writes_fsync_the_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    events: list[str] = []
    fsync, replace = os.fsync, os.replace

    def noting_fsync(fd: int) -> None:
        events.append("fsync " + ("folder" if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")) else "file"))
        fsync(fd)

    def noting_replace(source: str, target: str) -> None:
        events.append("replace")
        replace(source, target)

    monkeypatch.setattr(os, "fsync", noting_fsync)
    monkeypatch.setattr(os, "replace", noting_replace)
    atomic.atomic_write_text(tmp_path / "a.json", "{}")
    assert events == ["fsync file", "replace", "fsync folder"]
    assert (tmp_path / "a.json").read_text() == "{}" and _hidden(tmp_path) == []
