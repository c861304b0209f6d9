"""STCH: Lin, Zhang, Yang, Liu, Wang, Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective Optimization",
ICML 2024, arXiv 2402.19078. Semantics of the official multi-task code (``Xi-L/STCH``,
``STCH_MTL/LibMTL/weighting/STCH.py``), with the epoch index ``e`` counted from 0 by :meth:`epoch_end` calls:

* ``e < warmup``: ``S = Σ_i log(L_i + ε)`` (ε = 1e-20);
* ``e = warmup``: the same, while the mean loss vector of the epoch is accumulated; :meth:`epoch_end` turns it
  into the **nadir** vector ``n`` (set once);
* ``e > warmup``: ``l̃_i = log(L_i / n_i + ε)``, ``m = max_i l̃_i`` (constant), ``S = K μ log Σ_i exp((l̃_i − m)/μ)``
  (smooth Tchebycheff with preference 1 and ideal point 0 in log-normalised space; ``m`` only shifts the value).

Equivalence used here: the official code back-propagates ``S`` through the losses. Since ``S`` depends on the model
only through the losses, ``∇_θ S = Σ_i (∂S/∂L_i) ∇_θ L_i``, so the method is the loss weighting

    warmup:  w_i = 1 / (L_i + ε),
    after:   w_i = K softmax(l̃/μ)_i / (L_i + ε n_i)        (∂l̃_i/∂L_i = 1 / (L_i + ε n_i)),

evaluated at the current losses, and the engine applies ``Σ_i w_i L_i`` (same gradient for shared parameters and
heads; heads weighted as in the official code). Defaults: ``μ = 1``, ``warmup_epochs = 4`` (the official config).

Degenerate losses: negative losses (log) are an error; a zero loss gives the official ``1/ε`` weight (finite). A
nadir entry that is not positive (a task whose average loss over the nadir epoch is 0) is an error at
:meth:`epoch_end`, since the normalisation divides by it. :meth:`epoch_end` with no step in the nadir epoch is an
error too. The epoch counter, the running sums and the nadir are buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, BalancerError, StepInputs
from taskbalance.balancers.registry import register_balancer

EPS = 1e-20


class STCHOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mu: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="smoothing μ of the log-sum-exp (μ→0: Tchebycheff max)"
    )
    warmup_epochs: int = Field(
        4, ge=0,
        description="epochs 0..warmup_epochs use Σ log L_i; the mean loss of epoch warmup_epochs is the nadir",
    )


def stch_warmup_weights(losses: Tensor) -> Tensor:
    """``∂/∂L_i Σ_j log(L_j + ε) = 1 / (L_i + ε)``."""
    return 1.0 / (losses + EPS)


def stch_weights(losses: Tensor, nadir: Tensor, mu: float) -> Tensor:
    """``∂/∂L_i`` of ``K μ logsumexp((log(L/n + ε) − m)/μ)``: ``K softmax(l̃/μ)_i / (L_i + ε n_i)``."""
    normalised = torch.log(losses / nadir + EPS)
    return losses.numel() * torch.softmax(normalised / mu, dim=0) / (losses + EPS * nadir)


@register_balancer
class STCH(Balancer):
    """Smooth Tchebycheff scalarization of nadir-normalised log-losses, after a Σ log L warm-up."""

    name = "stch"
    advances_per_epoch = True
    description = "Smooth Tchebycheff: Σ log L warm-up, then K·μ·logsumexp(log(L/nadir)/μ) as loss weights (Lin 2024)."
    requires = "losses"
    Options = STCHOptions
    options: STCHOptions
    epoch: Tensor
    nadir_loss_sum: Tensor
    nadir_steps: Tensor
    nadir: Tensor
    has_nadir: Tensor

    def __init__(self, tasks: Sequence[str], **kwargs: Any) -> None:
        super().__init__(tasks, **kwargs)
        k = self.num_tasks
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.register_buffer("nadir_loss_sum", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("nadir_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("nadir", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("has_nadir", torch.zeros((), dtype=torch.bool))

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        losses = inputs.losses.to(self.nadir)
        if bool((losses < 0).any()):
            raise BalancerError(f"{self.name} takes log of the losses, which must be >= 0; got {losses.tolist()}")
        if bool(self.has_nadir):
            return Aggregation(weights=stch_weights(losses, self.nadir, self.options.mu))
        if int(self.epoch) == self.options.warmup_epochs:
            self.nadir_loss_sum += losses
            self.nadir_steps += 1
        return Aggregation(weights=stch_warmup_weights(losses))

    def epoch_end(self) -> None:
        """Close an epoch; at the end of epoch ``warmup_epochs`` the nadir becomes that epoch's mean loss."""
        if int(self.epoch) == self.options.warmup_epochs:
            if int(self.nadir_steps) == 0:
                raise BalancerError(
                    f"{self.name}: no training step in epoch {int(self.epoch)}, whose mean loss is the nadir"
                )
            nadir = self.nadir_loss_sum / self.nadir_steps
            if bool((nadir <= 0).any()):
                raise BalancerError(
                    f"{self.name}: the nadir (mean loss of epoch {int(self.epoch)}) must be > 0, got {nadir.tolist()}"
                )
            self.nadir.copy_(nadir)
            self.has_nadir.fill_(True)
        self.epoch += 1
