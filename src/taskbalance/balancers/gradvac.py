"""GradVac: Wang, Tsvetkov, Firat, Cao, "Gradient Vaccine: Investigating and Improving Multi-task Optimization in
Massively Multilingual Models", ICLR 2021 (spotlight), arXiv 2010.05874.

Rule: keep an EMA target ``φ̂_ij`` (init 0) of the cosine between task gradients. For every task i, start from
``g_i^PC = g_i`` and visit the other tasks j in a random order; with ``φ_ij = cos(g_i^PC, g_j)``::

    if φ_ij < φ̂_ij:   g_i^PC ← g_i^PC + ‖g_i^PC‖ (φ̂_ij √(1−φ_ij²) − φ_ij √(1−φ̂_ij²)) / (‖g_j‖ √(1−φ̂_ij²)) · g_j
    φ̂_ij ← (1−β) φ̂_ij + β φ_ij                     (every visit, as LibMTL and TorchJD)

and ``d = Σ_i g_i^PC``. The correction sets ``cos(g_i^PC, g_j)`` to ``φ̂_ij``; with ``φ̂ = 0`` it is PCGrad's
projection. As for PCGrad, ``g_i^PC = Σ_k C_ik g_k``, ``‖g_i^PC‖² = C_i G C_iᵀ`` and ``g_i^PC · g_j = (C G)_ij``,
so only the Gramian is needed (the TorchJD formulation) and ``d = Jᵀ w`` with ``w = Cᵀ 1``.

Defaults: ``β = 0.5`` (LibMTL ``GradVac_beta``, TorchJD; the paper's value could not be verified); whole-model
grouping (LibMTL ``GradVac_group_type=0``): one target matrix for the whole gradient source. The paper favours
per-layer targets; those need the Jacobian split by layer and are not implemented (with source ``last_layer``
the targets are those of the last shared layer). Scale: the sum of the modified gradients. Heads: raw, as LibMTL
(per-task backward, only the shared ``.grad`` is overwritten). Order: an independent random order of the other
tasks for every i, from the balancer's own generator (option ``seed``); the targets ``φ̂`` (K×K buffer) and the
generator state are in ``state_dict()``.

Deviations (degenerate inputs only): a pair where ``g_i^PC`` or ``g_j`` is zero has no cosine and is skipped
(no correction, no target update); LibMTL divides by the norms unguarded (0/0, and a NaN target stays NaN),
TorchJD adds ``eps`` to the denominators and pulls the target towards 0. ``√(1−φ̂²)`` is clamped below by ``eps``
(1e-8) so a target that reached ±1 cannot divide by zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, RandomizedBalancer, SeededOptions, StepInputs
from taskbalance.balancers.helpers import random_orders
from taskbalance.balancers.registry import register_balancer


class GradVacOptions(SeededOptions):
    beta: float = Field(0.5, ge=0, le=1, description="EMA rate of the cosine targets: φ̂ ← (1−β) φ̂ + β φ")
    eps: float = Field(1e-8, gt=0, description="lower bound of √(1−φ̂²) in the correction's denominator")


def gradvac_weights(
    gramian: Tensor, targets: Tensor, orders: Sequence[Sequence[int]], beta: float = 0.5, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """Weights ``w`` with ``Jᵀ w = Σ_i g_i^PC`` and the updated targets ``φ̂`` (K×K; the input is not modified)."""
    gram = gramian.to(torch.float64)
    targets = targets.to(torch.float64).clone()
    num_tasks = gram.shape[0]
    coefficients = torch.eye(num_tasks, dtype=torch.float64)
    norms = gram.diagonal().clamp_min(0).sqrt()
    for i, order in enumerate(orders):
        row = coefficients[i]
        for j in order:
            norm_i = (row @ gram @ row).clamp_min(0).sqrt()
            if norm_i == 0 or norms[j] == 0:
                continue
            cosine = ((row @ gram[:, j]) / (norm_i * norms[j])).clamp(-1.0, 1.0)
            target = targets[i, j]
            if cosine < target:
                sin_target = (1 - target**2).clamp_min(0).sqrt()
                sin_now = (1 - cosine**2).clamp_min(0).sqrt()
                row[j] += norm_i * (target * sin_now - cosine * sin_target) / (norms[j] * sin_target.clamp_min(eps))
            targets[i, j] = (1 - beta) * target + beta * cosine
    return coefficients.sum(dim=0), targets


@register_balancer
class GradVac(RandomizedBalancer):
    """Pull each pairwise gradient cosine up to an EMA target of its past values, then sum."""

    name = "gradvac"
    description = "Gradient Vaccine: raise pairwise gradient cosines to their EMA targets, then sum."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = GradVacOptions
    options: GradVacOptions
    targets: Tensor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("targets", torch.zeros(self.num_tasks, self.num_tasks, dtype=torch.float64))

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        orders = random_orders(self.num_tasks, self.generator)
        options = self.options
        weights, targets = gradvac_weights(inputs.gramian, self.targets.cpu(), orders, options.beta, options.eps)
        self.targets.copy_(targets)
        return Aggregation(weights=weights)
