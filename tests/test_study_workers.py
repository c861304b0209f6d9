"""A study's workers stop with it: SIGKILL of ``study --jobs 2`` leaves no process behind within seconds, the
runs they were training stop after a checkpoint (SIGTERM from the kernel or from the parent watch) and the next
invocation resumes them; each attempt keeps the previous attempt's log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import processes
from taskbalance.training.workers import rotate_log

STEPS = 40
SETTINGS = {"optim.iterations": STEPS, "optim.eval_every": STEPS, "optim.checkpoint_every": 100000, "log_every": 1,
            "data.batch_size": 2, "data.eval_batch_size": 8, "data.options.num_scenes": 1,
            "data.options.views_per_scene": 4, "data.options.resolution": [24, 32], "diagnostics.every": 0,
            "tasks": ["depth", "normals"]}

SLOW_STEPS = """
import time
from taskbalance.training import loop
advance = loop.Loop._advance
loop.Loop._advance = lambda self: time.sleep(0.1) or advance(self)
"""


def _steps(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.slow
@pytest.mark.timeout(1500)  # two invocations of the study, each with its own bound of 600 s
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigkill_of_the_study_stops_its_workers_and_the_runs_resume(tmp_path: Path):
    study, out = tmp_path / "study-tiny.yaml", tmp_path / "out"
    settings = "\n".join(f"  {key}: {json.dumps(value)}" for key, value in SETTINGS.items())
    study.write_text(f"base: quick\nseeds: [0]\nsingle_task: false\nmethods:\n  - {{name: rlw}}\nset:\n{settings}\n")
    command = [sys.executable, "-c", "from taskbalance.cli.main import main; main()", "study", str(study),
               "--out", str(out), "--jobs", "2", "--no-progress"]
    slow = tmp_path / "slow"  # every step of the first invocation takes 0.1 s more: it is still training when killed
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_STEPS)
    runs = [out / "uniform/seed-0", out / "rlw/seed-0"]
    printed = tmp_path / "study.out"
    with processes.started(command, printed, env={**os.environ, "PYTHONPATH": str(slow)}) as top:
        deadline = time.monotonic() + 600
        while not all(_steps(run) >= 3 for run in runs):
            assert top.poll() is None and time.monotonic() < deadline, printed.read_text()
            time.sleep(0.2)
        workers = processes.descendants(top.pid)
        assert len(workers) >= 2
        top.send_signal(signal.SIGKILL)
        top.wait()
        left = processes.wait_gone(workers, 10)
        assert not left, f"workers still alive 10 s after the study was killed: {left}"
    for run in runs:
        assert not (run / "results.json").exists()
        assert "stopped by SIGTERM after step" in (out / "logs" / f"{run.parent.name}/seed-0.log").read_text()

    done = processes.run(command, tmp_path / "resumed.out", timeout=600)
    assert done.returncode == 0, done.output
    for run in runs:
        log = out / "logs" / f"{run.parent.name}/seed-0.log"
        stopped = int(
            log.with_name(log.name + ".1").read_text().split("stopped by SIGTERM after step ")[1].split(";")[0]
        )
        assert f"from step {stopped}/{STEPS}" in " ".join(log.read_text().split())  # resumed where it stopped
        assert json.loads((run / "results.json").read_text())["meta"]["steps"] == STEPS


def test_a_worker_whose_parent_dies_stops_without_the_kernels_death_signal(tmp_path: Path):
    """The parent-pid watch alone (as where prctl is not available) ends an idle worker within a second or two."""
    pid_file = tmp_path / "worker.pid"
    module = Path(rotate_log.__code__.co_filename)  # loaded by path: no torch to import in the worker
    worker = textwrap.dedent(f"""
        import importlib.util, os, threading, time
        spec = importlib.util.spec_from_file_location("workers", {str(module)!r})
        workers = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(workers)
        threading.Thread(target=workers._watch_parent, args=(os.getppid(),), daemon=True).start()
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
    """)
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {worker!r}])
        while not os.path.exists({str(pid_file)!r}) or not open({str(pid_file)!r}).read():
            time.sleep(0.05)
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", parent], check=True, timeout=300)
    pid = int(pid_file.read_text())
    assert not processes.wait_gone({pid}, 5)


def test_rotate_log_keeps_earlier_attempts(tmp_path: Path):
    log = tmp_path / "run.log"
    rotate_log(log)  # nothing to keep yet
    for attempt in range(1, 5):
        log.write_text(f"attempt {attempt}\n")
        rotate_log(log, keep=2)
    assert not log.exists()
    assert (tmp_path / "run.log.1").read_text() == "attempt 4\n" and (
        tmp_path / "run.log.2"
    ).read_text() == "attempt 3\n"
    assert not (tmp_path / "run.log.3").exists()


def test_a_run_stopped_by_a_signal_stops_the_study_from_starting_more(tmp_path: Path):
    from concurrent.futures import Future

    from rich.console import Console

    from taskbalance.study import load_study, plan
    from taskbalance.study.executors import RunOutcome
    from taskbalance.study.schedule import execute

    class StoppedAtFirst:
        """Runs one at a time; the first run is stopped by SIGTERM after a checkpoint, as a worker's would be."""

        name, capacity, poll_seconds = "fake", 1, 0.0

        def __init__(self) -> None:
            self.submitted: list[str] = []

        def submit(self, tasks):  # noqa: ANN001, ANN202
            futures = []
            for task in tasks:
                self.submitted.append(task.name)
                future: Future[RunOutcome] = Future()
                future.set_result(RunOutcome(task.name, 1.0, "stopped by SIGTERM after step 3", stopped=True))
                futures.append(future)
            return futures

        def close(self) -> None:
            return None

    study = tmp_path / "study-tiny.yaml"
    study.write_text("base: quick\nseeds: [0, 1]\nsingle_task: false\nset:\n  tasks: [depth, normals]\n")
    spec = load_study(study)
    backend = StoppedAtFirst()
    state = execute(spec, plan(spec), tmp_path / "out", backend, Console(record=True), show_bar=False)
    assert backend.submitted == ["uniform/seed-0"]
    assert state.failed == {"uniform/seed-0": "stopped by SIGTERM after step 3",
                            "uniform/seed-1": "not run: the study was stopped by a signal"}
