"""Data-parallel execution of a balanced step: which gradients travel how (see ``docs/distributed.md``).

Two paths, chosen from the method:

* **loss weighting** (the method needs only the losses: uniform, static, UW, DWA, RLW, FAMO, STCH, IMTL-L): the
  model runs inside :class:`~torch.nn.parallel.DistributedDataParallel`, whose bucketed all-reduce overlaps the one
  backward of ``Σ_i w_i L_i``. The weights agree on every process because they are computed from globally reduced
  losses. On the steps that also measure per-task gradients (``diagnose``) the engine fills the heads from its
  ``autograd.grad`` calls, which DDP's hooks do not see: those steps run under ``no_sync()`` and every gradient is
  averaged in one flat all-reduce instead.
* **gradient methods** (``params``, ``last_layer`` or ``features`` source: MGDA, PCGrad, ..., AvgNorm, GradNorm): no
  DDP. The per-task gradients are reduced once per step by the balancer's reducer (the K×d Jacobian on ``params``
  and ``last_layer``, the K×K Gramian on ``features``), every process decides on the same global quantity; the
  gradients that are still local (task-specific parameters; the encoder on ``features`` and ``last_layer``) are
  averaged in one flat all-reduce.

Everything else the optimizer steps (the balancer's own parameters, URL adaptors) is averaged in that flat
all-reduce too, and with local BatchNorm rank 0's buffers are broadcast every step (DDP's ``broadcast_buffers``), in
one flat broadcast of their bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from taskbalance.balancers import Balancer
from taskbalance.tasks.losses import shared_normaliser
from taskbalance.training.config import ConfigError
from taskbalance.training.distributed import DistInfo, ProcessGroupReducer, average_gradients, broadcast_flat

if TYPE_CHECKING:
    from taskbalance.models.base import MultiTaskModel


def uses_ddp(balancer: Balancer) -> bool:
    """Whether the method needs only the losses (the DDP path: its write-back is one backward of ``Σ_i w_i L_i``)."""
    return balancer.requires == "losses"


def wants_sync_batchnorm(setting: bool | Literal["auto"], info: DistInfo, device: torch.device) -> bool:
    """Whether to use SyncBatchNorm: ``auto`` means yes when several processes train on GPUs."""
    if not info.enabled or setting is False:
        return False
    if device.type != "cuda":
        if setting is True:
            raise ConfigError(
                "distributed.sync_batchnorm: true needs GPUs (PyTorch's SyncBatchNorm does not run on the "
                "CPU); use auto or false"
            )
        return False
    return True


def convert_batchnorm(model: nn.Module, sync: bool) -> nn.Module:
    """``model`` with every BatchNorm turned into :class:`~torch.nn.SyncBatchNorm` when ``sync`` (the parameter and
    buffer tensors are kept, so optimizers and balancers built before still point at them)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if sync else model


class TrainingForward(nn.Module):
    """``model.forward_train`` as ``forward`` (what DDP wraps and hooks)."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Any:
        return self.model.forward_train(images)


class DataParallel:
    """One process's share of a data-parallel run: the forward to call, the reducer, the gradient hook.

    Args:
        model: the model (BatchNorm already converted if wanted, on this process's device, rank 0's state
            broadcast).
        balancer: the method (built on ``model``'s parameters).
        info: this process's place.
        replicated: every other tensor the optimizer steps (balancer and adaptor parameters).
        bucket_mb: DDP's bucket size.
    """

    def __init__(self, model: MultiTaskModel, balancer: Balancer, info: DistInfo, replicated: Iterable[Tensor] = (),
                 bucket_mb: float = 25.0) -> None:
        self.model = model
        self.info = info
        self.reducer = ProcessGroupReducer(info)
        self.ddp: DistributedDataParallel | None = None
        self.unsynced = False  # this step's forward ran under no_sync(): gradient_hook averages the model too
        self.local_batchnorm = any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
            for m in model.modules()
        )
        model_params = [p for p in model.parameters() if p.requires_grad]
        managed: set[int] = set()
        if uses_ddp(balancer):
            device_ids = [info.local_rank] if next(model.parameters()).is_cuda else None
            self.ddp = DistributedDataParallel(TrainingForward(model), device_ids=device_ids, bucket_cap_mb=bucket_mb)
            managed = {id(p) for p in model_params}
        elif balancer.source == "params":
            managed = {id(p) for p in balancer.shared_params}
        self.model_params = model_params
        self.averaged = [p for p in [*model_params, *replicated] if id(p) not in managed]

    def forward_train(self, images: Tensor, diagnose: bool = False) -> Any:
        """The model's training forward (through DDP on the loss-weighting path; without DDP's gradient hooks when
        the step measures per-task gradients, ``diagnose``)."""
        if self.ddp is None:
            return self.model.forward_train(images)
        if torch.is_grad_enabled():
            self.unsynced = diagnose
        if diagnose:
            with self.ddp.no_sync():
                return self.ddp(images)
        return self.ddp(images)

    def losses_context(self) -> AbstractContextManager[Any]:
        """Compute the task losses inside this: masked means normalised by the global pixel count."""
        return shared_normaliser(self.reducer.mean_count)

    def gradient_hook(self) -> None:
        """After the balancer's backward: average what is not yet global; align local BatchNorm buffers."""
        tensors = [*self.model_params, *self.averaged] if self.unsynced else self.averaged
        self.reducer.bytes_reduced += average_gradients(tensors, self.info)
        if self.ddp is None and self.local_batchnorm:
            self.sync_buffers()

    def sync_buffers(self) -> None:
        """Copy rank 0's buffers to every process (what DDP does before each forward with ``broadcast_buffers``), as
        one flat broadcast of their bytes."""
        broadcast_flat(list(self.model.buffers()), self.info)

