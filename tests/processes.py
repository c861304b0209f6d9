"""Processes started by tests that can neither hang the suite nor outlive their test.

A test's child may start processes of its own that leave its process group and even its parent: ``torchrun``
starts every worker in a new session, and a worker whose ``torchrun`` is killed is reparented to PID 1. Killing
the child's group then leaves them running, and reading the child's output through a pipe that they still hold
blocks forever. So here a child's output goes to a file, every wait has a time limit, and at the end (in time,
on a timeout, or when pytest-timeout interrupts the test) every process of the child's tree is killed: its
descendants, found through ``/proc/<pid>/task/*/children``, and every process that inherited the tree's mark in its
environment (which finds the reparented ones too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

import pytest

#: The environment variable that marks a test's processes (inherited by all their descendants).
MARK = "TASKBALANCE_TEST_TREE"


def descendants(pid: int) -> set[int]:
    """The children of ``pid``, their children, and so on (empty once ``pid`` is gone)."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                pids = {int(p) for p in children.read_text().split()}
            except OSError:  # the task ended meanwhile
                continue
            frontier.extend(pids - found)
            found |= pids
    return found


def marked(mark: str) -> set[int]:
    """Every process whose environment holds ``MARK=mark``."""
    needle = f"{MARK}={mark}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:  # gone, or not ours
                continue
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (zombies do not count)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running.add(pid)
    return running


def kill_all(members: Callable[[], set[int]]) -> None:
    """SIGKILL every process that ``members()`` names: stopped first, until no new one appears (a process about to
    start another cannot do so once stopped), then killed together; returns once they are gone (10 s at most)."""
    me, stopped = os.getpid(), set()
    while fresh := alive(members()) - stopped - {me}:
        for pid in fresh:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= fresh
    for pid in stopped:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(stopped, 10)


def wait_gone(pids: set[int], timeout: float, poll: float = 0.05) -> set[int]:
    """Wait until none of ``pids`` is alive or ``timeout`` seconds have passed; the ones still alive."""
    deadline = time.monotonic() + timeout
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(poll)
    return left


@contextmanager
def reaped() -> Iterator[str]:
    """Processes that the code inside starts (in this process: an executor, a pool) are killed when it ends.

    Yields the mark put into this process's environment meanwhile, which every process started inside inherits."""
    resource_tracker.ensure_running()  # multiprocessing's tracker outlives the block: started unmarked, not killed
    mark, previous = uuid.uuid4().hex, os.environ.get(MARK)
    os.environ[MARK] = mark
    try:
        yield mark
    finally:
        if previous is None:
            del os.environ[MARK]
        else:
            os.environ[MARK] = previous
        kill_all(lambda: marked(mark))


@contextmanager
def started(command: Sequence[str], output: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running with its stdout and stderr in the file ``output``; when the block ends, however it
    ends, the process and every process it started are killed and reaped."""
    mark = uuid.uuid4().hex
    with open(output, "wb") as sink:
        process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                   env={**(os.environ if env is None else env), MARK: mark}, cwd=cwd,
                                   start_new_session=True)
    try:
        yield process
    finally:
        kill_all(lambda: {process.pid} | descendants(process.pid) | marked(mark))
        process.wait()


@dataclass(frozen=True)
class Finished:
    """A command that ended by itself: its exit status and what it printed (stdout and stderr interleaved)."""

    returncode: int
    output: str


def run(command: Sequence[str], output: Path, timeout: float, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> Finished:
    """Run ``command`` (output into the file ``output``) to its end; the test fails, with the command's last output,
    when it has not ended after ``timeout`` seconds. Whatever it started is killed either way."""
    with started(command, output, env, cwd) as process:
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
    printed = output.read_text(errors="replace")
    if returncode is None:
        pytest.fail(f"{' '.join(map(str, command))} did not end within {timeout:g} s; its last output:\n"
                    + printed[-3000:])
    return Finished(returncode, printed)


def spawn(worker: Callable[..., Any], args: tuple[Any, ...], nprocs: int, timeout: float) -> None:
    """``torch.multiprocessing.spawn(worker, args, nprocs)`` with a time limit: the test fails when the processes
    have not all ended after ``timeout`` seconds (a collective waiting for a dead peer), and none is left behind."""
    import torch.multiprocessing as mp

    context = mp.start_processes(worker, args=args, nprocs=nprocs, join=False, start_method="spawn")
    try:
        deadline = time.monotonic() + timeout
        while not context.join(timeout=max(deadline - time.monotonic(), 0.0)):
            if time.monotonic() >= deadline:
                pytest.fail(f"{nprocs} spawned processes of {worker.__name__} did not end within {timeout:g} s")
    finally:
        kill_all(lambda: {p for pid in context.pids() for p in {pid} | descendants(pid)})
