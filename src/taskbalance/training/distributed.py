"""Optional multi-process training under ``torchrun`` (kept deliberately simple).

When ``WORLD_SIZE > 1`` the process group is initialised from the environment (NCCL on GPU, Gloo on CPU).
The model is *not* wrapped in ``DistributedDataParallel``: every rank runs the balancer on its own batch shard
(so per-task gradients, Gramians and diagnostics are local), and the combined gradient is then averaged over
ranks with one all-reduce per parameter before the optimizer step (the ``no_sync`` + manual all-reduce
pattern). This is exact for loss-weighting methods whose weights depend on quantities that agree across ranks
and a faithful data-parallel approximation for gradient methods (each rank aggregates its local Jacobian).
Stateful balancers keep per-rank state. Rank 0 alone writes the run directory and evaluates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env() -> DistInfo:
    """Join the process group described by torchrun's environment; single-process when ``WORLD_SIZE`` is unset or 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def average_gradients(params: Iterable[Tensor], info: DistInfo) -> None:
    """All-reduce and average ``.grad`` over ranks (no-op in a single process)."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(info.world_size)


def broadcast_parameters(params: Iterable[Tensor], info: DistInfo) -> None:
    """Copy rank 0's initial values to every rank."""
    if info.enabled:
        for p in params:
            dist.broadcast(p.data, src=0)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()
