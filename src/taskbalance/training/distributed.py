"""Multi-process training under ``torchrun``: the process group, start-up synchronisation, and the reductions.

Scaling convention (the one ``DistributedDataParallel`` uses): every process's task loss is an *estimate of the
global-batch loss*, and the global loss is the **mean over processes** of the local losses. The dense losses keep
this exact under unequal ignore counts by normalising with the mean pixel count over processes
(:func:`taskbalance.tasks.losses.shared_normaliser`, fed by :meth:`ProcessGroupReducer.mean_count`). Hence:

* the global gradient is the mean of the per-process gradients (DDP's bucketed average, or
  :func:`average_gradients`);
* the global per-task Jacobian on the parameters is the mean of the per-process Jacobians
  (:meth:`ProcessGroupReducer.sum_jacobian`);
* on the ``features`` source the global feature gradient is the concatenation over processes of
  ``∇_{z_r} L_r / W``, so the global Gramian is ``Σ_r G_r / W²`` (:meth:`ProcessGroupReducer.sum_gramian`).

Every reduction ends with the same tensor on every process, so the balancer's decisions (and its state) agree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from taskbalance.training import elastic

#: How long a process waits in a collective (rank 0 evaluating the full validation/test split keeps the others
#: waiting in a barrier; NCCL's own default of 10 minutes is too short for the exact odsF on PASCAL).
DEFAULT_TIMEOUT_MINUTES = 120
TIMEOUT_VARIABLE = "TASKBALANCE_DIST_TIMEOUT_MINUTES"


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
    """Join the process group described by torchrun's environment; single-process when ``WORLD_SIZE`` is unset or 1.

    NCCL when a GPU is visible (each process on ``cuda:LOCAL_RANK``), Gloo otherwise. The collective timeout is
    ``TASKBALANCE_DIST_TIMEOUT_MINUTES`` (default 120). Under torchrun the group keeps to this attempt's keys of the
    agent's store, and the process stops when the agent dies (:mod:`taskbalance.training.elastic`).
    """
    elastic.guard_against_agent_death()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        timeout = timedelta(minutes=float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_MINUTES)))
        if elastic.uses_agent_store():
            rank = int(os.environ["RANK"])
            store = elastic.attempt_store(rank, world_size, timeout)
            dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, timeout=timeout)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def communication_device(info: DistInfo) -> torch.device:
    """Where collectives take their tensors: this process's GPU under NCCL, the CPU under Gloo."""
    if info.enabled and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def process_seed(seed: int, info: DistInfo) -> int:
    """The seed of this process's global RNGs (dropout, stochastic depth): ``seed`` on rank 0, distinct per rank.

    The data order and the augmentation do not use it: the sampler shards one seeded permutation and each item's
    augmentation is drawn from (seed, epoch, index), so they are the same as in a single-process run.
    """
    return seed + 1_000_003 * info.rank


class ProcessGroupReducer:
    """The balancers' ``GradientReducer`` over the default process group (see the module docstring for the scale).

    ``bytes_reduced`` counts the payload of every all-reduce this object issued (a ring all-reduce moves about
    twice that per process).
    """

    def __init__(self, info: DistInfo) -> None:
        if not info.enabled:
            raise ValueError("ProcessGroupReducer needs a process group with more than one process")
        self.world_size = info.world_size
        self.device = communication_device(info)
        self.bytes_reduced = 0

    def _sum(self, tensor: Tensor) -> Tensor:
        buffer = tensor.detach().to(self.device, copy=True).contiguous()
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        self.bytes_reduced += buffer.numel() * buffer.element_size()
        return buffer.to(tensor.device)

    def sum_losses(self, values: Tensor) -> Tensor:
        """The global-batch task losses: the mean over processes of each process's losses."""
        return self._sum(values) / self.world_size

    def sum_jacobian(self, jacobian: Tensor) -> Tensor:
        """The global K×d Jacobian (``params``/``last_layer`` sources): the mean of the per-process Jacobians."""
        return self._sum(jacobian) / self.world_size

    def sum_gramian(self, gramian: Tensor) -> Tensor:
        """The global K×K Gramian on the ``features`` source: ``Σ_r G_r / W²`` (global feature gradient = the
        concatenation of the processes' ``∇_{z_r} L_r / W``)."""
        return self._sum(gramian) / self.world_size**2

    def mean_count(self, count: Tensor) -> Tensor:
        """A pixel count's mean over processes (the losses' normaliser, see ``tasks.losses.shared_normaliser``)."""
        return self._sum(count) / self.world_size


def average_gradients(params: Iterable[Tensor], info: DistInfo) -> int:
    """Average ``.grad`` over processes with one all-reduce per dtype and device (a parameter without gradient
    counts as zero). Returns the payload bytes reduced (0 in a single process)."""
    if not info.enabled:
        return 0
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    device = communication_device(info)
    sent = 0
    for grads in groups.values():
        flat = _flatten_dense_tensors(grads).to(device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(info.world_size)
        sent += flat.numel() * flat.element_size()
        for grad, reduced in zip(grads, _unflatten_dense_tensors(flat.to(grads[0].device), grads)):
            grad.copy_(reduced)
    return sent


def broadcast_flat(tensors: Sequence[Tensor], info: DistInfo, src: int = 0) -> int:
    """Copy rank ``src``'s values of ``tensors`` (any dtypes) to every process in **one** broadcast: their bytes go
    as one flat uint8 tensor. Returns the bytes broadcast (0 in a single process or for no tensors)."""
    if not info.enabled or not tensors:
        return 0
    device = communication_device(info)
    flat = torch.cat([t.detach().reshape(-1).contiguous().view(torch.uint8).to(device) for t in tensors])
    dist.broadcast(flat, src=src)
    offset = 0
    with torch.no_grad():
        for tensor in tensors:
            size = tensor.numel() * tensor.element_size()
            chunk = flat[offset:offset + size].to(tensor.device).view(tensor.dtype).view(tensor.shape)
            tensor.data.copy_(chunk)
            offset += size
    return flat.numel()


def broadcast_state(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters *and* buffers (BatchNorm statistics, counters) to every process (one broadcast)."""
    broadcast_flat([*module.parameters(), *module.buffers()], info)


def gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order, on every process (``[value]`` in a single process)."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.enabled:
        dist.barrier()



def any_process(flag: bool, info: DistInfo) -> bool:
    """Whether ``flag`` is true on any process (a max all-reduce of one integer; ``flag`` itself in one process)."""
    if not info.enabled:
        return flag
    value = torch.tensor([int(flag)], device=communication_device(info))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
