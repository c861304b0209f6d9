"""Random Loss Weighting (RLW): Lin, Ye, Zhang, Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test
for Multi-Task Learning", TMLR 2022, arXiv 2111.10603.

Rule: at every step draw ``λ̃ ~ N(0, I_K)`` and use ``λ = softmax(λ̃)``, ``L = Σ_i λ_i L_i`` (heads weighted; the
weighted sum is back-propagated). The weights sum to **1**, not K, as in the official code (LibMTL ``RLW.py``) and
in Nash-MTL/FAMO/TorchJD; with Adam the constant factor is irrelevant. The paper also studies other distributions
(uniform, Dirichlet, Bernoulli, ...); only the standard normal one, the default everywhere, is provided.

Randomness: like every randomized method, the balancer owns a CPU ``torch.Generator`` whose state is saved in
``state_dict()`` (:class:`~taskbalance.balancers.base.RandomizedBalancer`), so a resumed run draws exactly the
weights the original run would have drawn. Its seed is option ``seed``; unlike the other randomized methods the
default is ``None``: the seed is then drawn from torch's global RNG at construction (and recorded in
``options.seed``), so a run's ``torch.manual_seed`` decides the weight sequence and runs with different seeds
draw different weights. Deviation: the official code draws with the global ``torch.randn``, sharing the model's
RNG stream, so its weights depend on everything else that consumes random numbers; ours do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, RandomizedBalancer, SeededOptions, StepInputs
from taskbalance.balancers.registry import register_balancer


class RLWOptions(SeededOptions):
    seed: int | None = Field(  # type: ignore[assignment]
        None, ge=0, description="seed of the balancer's own generator (None: drawn from torch's global RNG)"
    )


def rlw_weights(num_tasks: int, generator: torch.Generator) -> Tensor:
    """``softmax(λ̃)`` with ``λ̃ ~ N(0, I_K)`` drawn from ``generator`` (float64)."""
    return torch.softmax(torch.randn(num_tasks, generator=generator, dtype=torch.float64), dim=0)


@register_balancer
class RLW(RandomizedBalancer):
    """Random softmax-normal loss weights, redrawn every step."""

    name = "rlw"
    description = "Random loss weighting: w = softmax(N(0, I)) redrawn every step, sums to 1 (Lin 2022)."
    requires = "losses"
    Options = RLWOptions
    options: RLWOptions

    def __init__(self, tasks: Sequence[str], **kwargs: Any) -> None:
        if kwargs.get("seed") is None:
            kwargs["seed"] = int(torch.randint(0, 2**62, ()))
        super().__init__(tasks, **kwargs)

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        return Aggregation(weights=rlw_weights(self.num_tasks, self.generator))
