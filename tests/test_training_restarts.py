"""``torchrun --max-restarts 1`` with ``train --resume-if-exists``: a rank that dies mid-run (here: rank 1 exits at
step 3 on the first attempt) makes torchrun restart every worker, and the restarted workers resume from the last
checkpoint and finish the run.

Run as a script (``torchrun ... tests/test_training_restarts.py RUN MARKER``), this file is the job's worker."""

from __future__ import annotations

import json
import os
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
def test_torchrun_restart_after_a_killed_rank_resumes_and_finishes(tmp_path: Path):
    for attempt in range(2):
        run, marker = tmp_path / f"run-{attempt}", tmp_path / f"crashed-{attempt}"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                   "--max-restarts", "1", str(Path(__file__).resolve()), str(run), str(marker)]
        job = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                             timeout=300)
        output = job.stdout + job.stderr
        # Seen once in the full suite on a loaded 2-core machine: the restarted ranks' Gloo mesh refused a connection
        # (Gloo's connectFullMesh inside init_process_group, after torchrun's restart). That is a start-up race of the
        # process group, not a lost run, so the whole job is tried once more; any other failure fails at once.
        if job.returncode == 0 or "Connection refused" not in output:
            break
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
        advance = loop.Trainer._advance

        def die_at_step_three(self: loop.Trainer) -> bool:
            if self.state.step + 1 == 3:
                marker.write_text("rank 1 exited at step 3")
                os._exit(1)
            return advance(self)

        loop.Trainer._advance = die_at_step_three  # type: ignore[method-assign]
    app(["train", "quick", *(a for s in TINY for a in ("--set", s)), "--out", str(run), "--resume-if-exists",
         "--no-progress"])


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
