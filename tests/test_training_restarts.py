"""Runs under ``torchrun`` that survive a lost rank and a lost torchrun.

* ``torchrun --max-restarts 1`` with ``train --resume-if-exists``: a rank that dies mid-run (here: rank 1 exits at
  step 3 on the first attempt) makes torchrun restart every worker, and the restarted workers resume from the last
  checkpoint and finish the run. The restarted workers meet in the agent's store that the first attempt used:
  :func:`taskbalance.training.elastic.agree_on_attempt` keeps them off its keys.
* A torchrun killed by SIGKILL leaves no worker behind: they stop after a checkpoint.
* A run lock is not kept by a forked child (a DataLoader worker) of a rank 0 that died.

Run as a script (``torchrun ... tests/test_training_restarts.py RUN MARKER [KEY=VALUE ...]``), this file is the
job's worker."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist

import processes
from taskbalance.training.checkpoint import find_checkpoint, verify_checkpoint
from taskbalance.training.elastic import agree_on_attempt

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the Gloo backend is not available")

STEPS = 6
TINY = [f"optim.iterations={STEPS}", "optim.eval_every=100", "optim.checkpoint_every=2", "log_every=1",
        "data.batch_size=2", "data.eval_batch_size=8", "data.options.num_scenes=1", "data.options.views_per_scene=4",
        "data.options.resolution=[24,32]", "diagnostics.every=0", "tasks=[depth,normals]", "method.name=famo"]


@pytest.mark.slow
def test_torchrun_restart_after_a_killed_rank_resumes_and_finishes(tmp_path: Path):
    run, marker = tmp_path / "run", tmp_path / "crashed"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", "1", str(Path(__file__).resolve()), str(run), str(marker)]
    job = processes.run(command, tmp_path / "torchrun.out", timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = job.output
    assert job.returncode == 0, output
    assert marker.read_text() == "rank 1 exited at step 3"  # the first attempt did lose a rank
    assert f"resuming {run} from step 2/{STEPS}" in " ".join(output.split())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, STEPS + 1))
    assert json.loads((run / "results.json").read_text())["meta"]["steps"] == STEPS


def _train_records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_a_killed_torchrun_leaves_no_worker_and_its_run_stops_after_a_checkpoint(tmp_path: Path):
    run, marker = tmp_path / "run", tmp_path / "no-crash"
    marker.write_text("")  # no rank dies; the run is far from its end when torchrun is killed
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(Path(__file__).resolve()), str(run), str(marker), "optim.iterations=100000",
               "optim.checkpoint_every=100000"]
    output = tmp_path / "torchrun.out"
    with processes.started(command, output, env={**os.environ, "OMP_NUM_THREADS": "1"}) as job:
        deadline = time.monotonic() + 300
        while len(_train_records(run)) < 2:
            assert job.poll() is None and time.monotonic() < deadline, output.read_text()[-3000:]
            time.sleep(0.2)
        workers = processes.descendants(job.pid)
        assert len(workers) >= 2
        job.send_signal(signal.SIGKILL)
        left = processes.wait_gone(workers, 30)
        assert not left, f"workers alive 30 s after torchrun was killed:\n{output.read_text()}"
    # the workers stopped after a step and checkpointed it (checkpoint_every is far away)
    last = find_checkpoint(run / "checkpoints", "last")
    assert last is not None and verify_checkpoint(last.path) is None, output.read_text()[-3000:]
    assert last.step == _train_records(run)[-1]["step"] >= 2


def test_restarted_ranks_agree_on_an_attempt_whatever_the_last_attempt_left_in_the_store():
    store = dist.HashStore()
    old = agreed(store, delay_rank_0=0.0)
    assert len(set(old)) == 1
    for delay in (0.0, 0.5):  # rank 0 of the new attempt late: rank 1 first reads the old attempt's keys
        new = agreed(store, delay_rank_0=delay)
        assert len(set(new)) == 1 and new[0] != old[0]
        old = new


def agreed(store: dist.Store, delay_rank_0: float) -> list[str]:
    """The attempt id that each of 3 ranks (threads) returns."""
    ids = [""] * 3

    def rank(r: int) -> None:
        if r == 0:
            time.sleep(delay_rank_0)
        ids[r] = agree_on_attempt(store, r, 3, timedelta(seconds=60))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return ids


def test_a_forked_child_of_a_dead_trainer_does_not_keep_its_run_locked(tmp_path: Path):
    """As a DataLoader worker (forked) would after its rank 0 was killed: the restarted rank 0 gets the lock."""
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from taskbalance.training.rundir import RunLock, RunLockedError
        path = Path({str(tmp_path / "run.lock")!r})
        trainer = os.fork()
        if trainer == 0:
            lock = RunLock.acquire(path)
            if os.fork() == 0:  # the trainer's forked child outlives it
                time.sleep(20)
                os._exit(0)
            os._exit(1)  # the trainer dies without releasing its lock
        os.waitpid(trainer, 0)
        try:
            RunLock.acquire(path)
            print("locked by the restarted trainer")
        except RunLockedError as error:
            print(error)
    """)
    done = processes.run([sys.executable, "-c", script], tmp_path / "out", timeout=120)
    assert done.returncode == 0 and done.output.strip() == "locked by the restarted trainer", done.output


def _worker(run: Path, marker: Path, settings: list[str]) -> None:
    """One rank: on the first attempt (no ``marker``) rank 1 dies at step 3; every attempt trains with
    --resume-if-exists, with ``settings`` over ``TINY``."""
    from taskbalance.cli.main import app
    from taskbalance.training import loop

    if not marker.exists() and os.environ["RANK"] == "1":
        advance = loop.Loop._advance

        def die_at_step_three(self: loop.Loop) -> bool:
            if self.state.step + 1 == 3:
                marker.write_text("rank 1 exited at step 3")
                os._exit(1)
            return advance(self)

        loop.Loop._advance = die_at_step_three  # type: ignore[method-assign]
    app(["train", "quick", *(a for s in [*TINY, *settings] for a in ("--set", s)), "--out", str(run),
         "--resume-if-exists", "--no-progress"])


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
