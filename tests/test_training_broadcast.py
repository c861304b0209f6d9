"""Rank 0's buffers reach every process in one flat broadcast (BatchNorm statistics and counters of mixed dtypes),
with the values the former one-broadcast-per-buffer loop gave."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

import processes
from taskbalance.training.distributed import DistInfo, broadcast_flat, broadcast_state

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the Gloo backend is not available")


def _model(rank: int) -> nn.Module:
    """BatchNorm layers whose statistics and counters differ per rank (as after local forward passes)."""
    torch.manual_seed(rank)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    model.train()
    for _ in range(rank + 1):
        model(torch.randn(2, 3, 6, 6) * (rank + 1))
    return model


def _worker(rank: int, store: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        info = DistInfo(rank=rank, world_size=2)
        flat, looped = _model(rank), _model(rank)
        for buffer in looped.buffers():  # the former sync_buffers
            dist.broadcast(buffer, src=0)
        calls = []
        broadcast = dist.broadcast
        dist.broadcast = lambda tensor, src: calls.append(tensor.dtype) or broadcast(tensor, src=src)  # type: ignore[assignment]
        try:
            sent = broadcast_flat(list(flat.buffers()), info)
        finally:
            dist.broadcast = broadcast  # type: ignore[assignment]
        assert calls == [torch.uint8], calls  # one broadcast for float32 statistics and int64 counters together
        assert sent == sum(b.numel() * b.element_size() for b in flat.buffers())
        for (name, a), b in zip(flat.named_buffers(), looped.buffers()):
            assert a.dtype == b.dtype and torch.equal(a, b), name
        assert torch.equal(flat[1].num_batches_tracked, torch.tensor(1))  # rank 0's counter, on both ranks

        moved = _model(rank)  # start-up: parameters and buffers, one broadcast
        broadcast_state(moved, info)
        reference = _model(0)
        for (name, a), b in zip(moved.state_dict().items(), reference.state_dict().values()):
            assert torch.equal(a, b), name
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_flat_broadcast_equals_one_broadcast_per_buffer(tmp_path: Path):
    processes.spawn(_worker, (str(tmp_path / "store"),), nprocs=2, timeout=300)


def test_flat_broadcast_is_a_no_op_in_one_process():
    tensor = torch.ones(3)
    assert broadcast_flat([tensor], DistInfo()) == 0 and torch.equal(tensor, torch.ones(3))
