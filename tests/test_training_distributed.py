"""Multi-process training on CPU (Gloo): the gradient all-reduce on its own, and a real two-rank ``torchrun`` job
on tiny synthetic scenes with FAMO (DDP path, post-step losses reduced): only rank 0 writes the run directory; both
ranks end with the same weights, BatchNorm buffers and balancer state; each rank's RNG streams are checkpointed.

Run as a script (``torchrun ... tests/test_training_distributed.py RUN DUMPS``), this file is the job's worker."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

import processes
from taskbalance.training.distributed import DistInfo, average_gradients

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the Gloo backend is not available")

TINY = ["optim.iterations=4", "optim.eval_every=2", "data.batch_size=2", "data.eval_batch_size=8",
        "data.options.num_scenes=1", "data.options.views_per_scene=4", "data.options.resolution=[24,32]",
        "diagnostics.every=2", "log_every=1", "method.name=famo"]


def _average_worker(rank: int, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        a = torch.zeros(3, requires_grad=True)
        a.grad = torch.full((3,), float(rank + 1))
        b = torch.zeros(2, requires_grad=True)
        if rank == 1:  # a parameter the balancer left without gradient on one rank counts as zero there
            b.grad = torch.full((2,), 4.0)
        average_gradients([a, b], DistInfo(rank=rank, world_size=2))
        assert torch.equal(a.grad, torch.full((3,), 1.5))
        assert torch.equal(b.grad, torch.full((2,), 2.0))
    finally:
        dist.destroy_process_group()


def test_average_gradients_over_two_ranks(tmp_path: Path):
    processes.spawn(_average_worker, (str(tmp_path / "store"),), nprocs=2, timeout=300)


@pytest.mark.slow
def test_torchrun_two_ranks(tmp_path: Path):
    run, dumps = tmp_path / "run", tmp_path / "dumps"
    dumps.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).resolve()), str(run), str(dumps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = processes.run(command, tmp_path / "torchrun.out", timeout=300, env=env)
    assert job.returncode == 0, job.output

    assert (run / "results.json").is_file() and (run / "checkpoints" / "last.json").is_file()
    writes = {rank: json.loads((dumps / f"writes-rank{rank}.json").read_text()) for rank in (0, 1)}
    assert writes[1] == [] and writes[0], writes
    train_steps = [
        r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"
    ]
    assert train_steps == [1, 2, 3, 4]
    assert len(list((run / "tb").iterdir())) == 1

    # rank 0's last checkpoint holds its weights and buffers after the final step; rank 1 must have the same ones
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    assert last["step"] == 4
    saved = load_file(run / "checkpoints" / last["path"] / "model.safetensors")
    rank1 = load_file(dumps / "params-rank1.safetensors")
    assert any("running_mean" in name for name in rank1) and set(rank1) == set(saved)
    for name, value in rank1.items():
        assert torch.equal(value, saved[name]), name
    state = torch.load(run / "checkpoints" / last["path"] / "state.pt", weights_only=True)
    balancer1 = torch.load(dumps / "balancer-rank1.pt", weights_only=True)
    assert balancer1.keys() == state["balancer"].keys()
    for name, value in balancer1.items():
        assert torch.equal(value, state["balancer"][name]), name
    # rank 0 evaluated the whole validation split: its logged metrics are those of the checkpointed weights on it
    logged = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "val"][-1]
    assert logged["step"] == 4
    alone = _evaluate_alone(run / "checkpoints" / last["path"])
    assert logged["metrics"].keys() == alone.keys()
    for task, values in alone.items():
        assert logged["metrics"][task] == pytest.approx(values, rel=1e-5), task
    streams = [process["torch"] for process in state["rng_processes"]]
    assert len(streams) == 2 and not torch.equal(streams[0], streams[1])  # dropout masks differ across ranks
    assert torch.equal(state["rng"]["torch"], streams[0])


def _evaluate_alone(checkpoint: Path) -> dict[str, dict[str, float]]:
    """The validation metrics of a checkpoint's weights, computed in this (single) process on the whole split."""
    from torch.utils.data import DataLoader

    from taskbalance.training.components import build_model_for, build_specs, build_split
    from taskbalance.training.evaluate import evaluate
    from taskbalance.training.presets import load_config

    config = load_config("quick", TINY)
    val = build_split(config, "val", train=False)
    model = build_model_for(config, val.info)
    model.load_state_dict(load_file(checkpoint / "model.safetensors"))
    return evaluate(model, DataLoader(val, batch_size=3), build_specs(config, val.info), torch.device("cpu"))


def _record_writes(root: Path, log: list[str]) -> None:
    """Audit hook: note every file opened for writing, created, renamed or removed under ``root``."""
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & write_flags)
        elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, os.PathLike)) and Path(os.path.abspath(path)).is_relative_to(root):
            log.append(f"{event} {path}")

    sys.addaudithook(hook)


def _worker(run: Path, dumps: Path) -> None:
    """One rank of the job: train the tiny config, then record what this rank wrote and (rank 1) its weights."""
    from taskbalance.training.presets import load_config
    from taskbalance.training.trainer import Trainer

    writes: list[str] = []
    _record_writes(run.resolve(), writes)
    trainer = Trainer(load_config("quick", TINY), run, show_progress=False)
    trainer.fit()
    rank = trainer.dist.rank
    (dumps / f"writes-rank{rank}.json").write_text(json.dumps(writes))
    if rank == 1:  # rank 0's model now holds the selected (best) weights; its last ones are in the checkpoint
        save_file({n: p.detach().contiguous() for n, p in trainer.model.state_dict().items()},
                  str(dumps / f"params-rank{rank}.safetensors"))
        torch.save(trainer.balancer.state_dict(), dumps / f"balancer-rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
