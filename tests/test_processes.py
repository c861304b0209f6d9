"""tests/processes.py: a child's whole tree is killed, the one a timeout interrupts included, so that no test can
hang the suite on a pipe or a process that outlived its parent (torchrun's workers run in sessions of their own)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from processes import alive, run, spawn, wait_gone

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")


def _starter(pid_file: Path, then: str) -> list[str]:
    """A Python process that starts a grandchild in a new session (as torchrun starts its workers), writes the
    grandchild's pid, then runs ``then``."""
    code = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; print('child', flush=True); time.sleep(120)"],
                                 start_new_session=True)
        open({str(pid_file)!r}, "w").write(str(child.pid))
        {then}
    """)
    return [sys.executable, "-c", code]


def test_a_timeout_kills_the_grandchild_in_its_own_session(tmp_path: Path):
    pid_file = tmp_path / "pid"
    tic = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="did not end within 3 s"):
        run(_starter(pid_file, "time.sleep(120)"), tmp_path / "out", timeout=3)
    assert time.monotonic() - tic < 30
    assert not alive({int(pid_file.read_text())})


def test_an_orphan_left_by_a_finished_command_is_killed(tmp_path: Path):
    pid_file = tmp_path / "pid"
    done = run(_starter(pid_file, "time.sleep(1); print('parent done', flush=True)"), tmp_path / "out", timeout=60)
    assert done.returncode == 0 and "child" in done.output and "parent done" in done.output
    assert not alive({int(pid_file.read_text())})


def _hang(rank: int, pid_dir: str) -> None:
    (Path(pid_dir) / str(rank)).write_text(str(os.getpid()))
    time.sleep(120)


def test_spawned_processes_that_hang_fail_the_test_and_are_killed(tmp_path: Path):
    with pytest.raises(pytest.fail.Exception, match="did not end within 10 s"):
        spawn(_hang, (str(tmp_path),), nprocs=2, timeout=10)
    pids = {int((tmp_path / str(rank)).read_text()) for rank in (0, 1)}
    assert len(pids) == 2 and not alive(pids)


def test_wait_gone_returns_the_survivors_once_the_time_is_up():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert wait_gone({sleeper.pid}, 0.3) == {sleeper.pid}
        sleeper.kill()
        sleeper.wait()
        assert wait_gone({sleeper.pid}, 5) == set()
    finally:
        sleeper.kill()
        sleeper.wait()
