"""PCGrad: Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS 2020,
arXiv 2001.06782, Algorithm 1.

Rule: for every task i, start from ``g_i^PC = g_i`` and visit the other tasks j in a random order; when they
conflict, remove from ``g_i^PC`` its component along the *original* ``g_j``::

    if g_i^PC · g_j < 0:   g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j

and update with ``d = Σ_i g_i^PC``. Every ``g_i^PC`` stays a combination ``Σ_k C_ik g_k`` of the original
gradients, and ``g_i^PC · g_j = (C G)_ij``, so the method needs only the Gramian ``G = J Jᵀ``: the projection
``C_ij ← C_ij − (C G)_ij / G_jj`` is done on the K×K coefficients and ``d = Jᵀ w`` with ``w = Cᵀ 1`` (the
TorchJD formulation). The result equals the vector algorithm exactly (up to float rounding).

Defaults and conventions:

* Scale: the sum of the projected gradients (Algorithm 1, LibMTL, TorchJD; the CAGrad repo's mean × K is the
  same), so with no conflict PCGrad equals ``uniform``.
* Order: an independent random order of the other tasks for every i (the paper's Algorithm 1, CAGrad repo's
  vectorised rounds, TorchJD), drawn from the balancer's own CPU generator (option ``seed``), whose state is saved
  in ``state_dict()``. The official TF code discards its ``tf.random.shuffle`` and so never shuffles; LibMTL
  shuffles all indices including i.
* Heads: raw (unweighted) task gradients, as LibMTL and the CAGrad repo (per-task backward, then only the shared
  ``.grad`` is overwritten). The official TF code instead flattens shared *and* head variables together and
  projects the whole vector; this library projects only the gradient source.
* A task with a zero gradient is never projected against (its dot products are 0, so the test ``< 0`` fails);
  the TF original divides 0/0 there. LibMTL adds 1e-8 to ``‖g_j‖²``; no epsilon is needed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from taskbalance.balancers.base import Aggregation, RandomizedBalancer, SeededOptions, StepInputs
from taskbalance.balancers.helpers import random_orders
from taskbalance.balancers.registry import register_balancer


def pcgrad_weights(gramian: Tensor, orders: Sequence[Sequence[int]]) -> Tensor:
    """Weights ``w`` with ``Jᵀ w = Σ_i g_i^PC`` (Algorithm 1), task i projected against ``orders[i]`` in turn."""
    gram = gramian.to(torch.float64)
    num_tasks = gram.shape[0]
    coefficients = torch.eye(num_tasks, dtype=torch.float64)
    for i, order in enumerate(orders):
        row = coefficients[i]
        for j in order:
            dot = row @ gram[:, j]
            if dot < 0 and gram[j, j] > 0:
                row[j] -= dot / gram[j, j]
    return coefficients.sum(dim=0)


@register_balancer
class PCGrad(RandomizedBalancer):
    """Project each task gradient onto the normal plane of every conflicting task gradient, then sum."""

    name = "pcgrad"
    description = "Gradient surgery: project away conflicting components pairwise in random order, then sum."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = SeededOptions
    options: SeededOptions

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        orders = random_orders(self.num_tasks, self.generator)
        return Aggregation(weights=pcgrad_weights(inputs.gramian, orders))
