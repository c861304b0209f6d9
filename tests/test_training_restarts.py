"""``torchrun --max-restarts 1`` with ``train --resume-if-exists``: a rank that dies mid-run (here: rank 1 exits at
step 3 on the first attempt) makes torchrun restart every worker, and the restarted workers resume from the last
checkpoint and finish the run.

Run as a script (``torchrun ... tests/test_training_restarts.py RUN MARKER``), this file is the job's worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the Gloo backend is not available")

STEPS = 6
TINY = [f"optim.iterations={STEPS}", "optim.eval_every=100", "optim.checkpoint_every=2", "log_every=1",
        "data.batch_size=2", "data.eval_batch_size=8", "data.options.num_scenes=1", "data.options.views_per_scene=4",
        "data.options.resolution=[24,32]", "diagnostics.every=0", "tasks=[depth,normals]", "method.name=famo"]


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="under load the restarted job sometimes refuses a Gloo connection or hangs "
                   "after torchrun's restart (1 full-suite run in 4 on a 2-core machine; alone it passed 3 of 3): a "
                   "race not yet diagnosed, so issue 19 stays open")
def test_torchrun_restart_after_a_killed_rank_resumes_and_finishes(tmp_path: Path):
    run, marker = tmp_path / "run", tmp_path / "crashed"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--max-restarts", "1", str(Path(__file__).resolve()), str(run), str(marker)]
    # its own session, so that a hung job is killed with its workers (none is left behind)
    job = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = job.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        output, _ = job.communicate()
        pytest.fail("the restarted job did not finish within 180 s:\n" + output[-3000:])
    assert job.returncode == 0, output
    assert marker.read_text() == "rank 1 exited at step 3"  # the first attempt did lose a rank
    assert f"resuming {run} from step 2/{STEPS}" in " ".join(output.split())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, STEPS + 1))
    assert json.loads((run / "results.json").read_text())["meta"]["steps"] == STEPS


def _worker(run: Path, marker: Path) -> None:
    """One rank: on the first attempt rank 1 dies at step 3; every attempt trains with --resume-if-exists."""
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
    app(["train", "quick", *(a for s in TINY for a in ("--set", s)), "--out", str(run), "--resume-if-exists",
         "--no-progress"])


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
