"""GradDrop: Chen, Ngiam, Huang, Luong, Kretzschmar, Chai, Anguelov, "Just Pick a Sign: Optimizing Deep Multitask
Models with Gradient Sign Dropout", NeurIPS 2020, arXiv 2010.06808.

Rule, elementwise over the gradient source: with per-task gradients ``g_i`` (rows of J),

    P = ½ (1 + Σ_i g_i / (Σ_i |g_i| + ε))                 (gradient positive sign purity, in [0, 1])
    U ~ Uniform(0, 1)
    M_i = 1[P > U] 1[g_i > 0] + 1[P < U] 1[g_i < 0]         (keep only the sign drawn with probability P)
    d = Σ_i (ℓ_i + (1 − ℓ_i) M_i) ∘ g_i                      (leak ℓ_i ∈ [0, 1], default 0)

Two variants (option ``variant``):

* ``flat`` (default): the rule above on the flat source gradients, as in the CAGrad, FAMO, FairGrad and IMGrad
  repositories, whose GradDrop numbers are the ones those papers' tables (and the study paper's) report:
  no ``sign(A)``, no batch marginalisation, ε = 1e-8, masked gradients averaged then multiplied by K (= the sum).
* ``paper``: the paper's layer at the shared activations ``A`` (needs source ``features``, as LibMTL's
  ``rep_grad``): the purity and the masks use ``∇_i = Σ_batch sign(A) ∘ ∂L_i/∂A`` (one value per feature element,
  the first dimension of every feature tensor being the batch), the masks are broadcast over the batch and
  applied to ``∂L_i/∂A``; ε = 1e-7 as LibMTL.

The paper's monotone transform f of P is the identity (its default). The direction is explicit (not a weighting
of the task gradients); ``weights`` are reported as ones (GradDrop does not scale tasks). Heads: raw, as the CAGrad
repository (per-task backward, only the shared ``.grad`` is overwritten). ``U`` is drawn from the balancer's own
CPU generator (option ``seed``, state in ``state_dict()``), so runs are reproducible and device-independent, at
the cost of a host-to-device copy of the uniforms on GPU. Not implemented: the FAMO repository's clipping of the
shared gradient to norm 1 (that belongs to the training loop's gradient clipping).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, BalancerError, RandomizedBalancer, SeededOptions, StepInputs
from taskbalance.balancers.registry import register_balancer

EPS_FLAT = 1e-8
EPS_PAPER = 1e-7


class GradDropOptions(SeededOptions):
    variant: Literal["flat", "paper"] = Field(
        "flat",
        description="'flat': CAGrad/FAMO-repo rule on flat source gradients; 'paper': sign(A), batch-summed "
        "(source features)",
    )
    leak: tuple[float, ...] | None = Field(
        None, description="per-task leak ℓ_i in [0, 1] (a task with ℓ_i = 1 is never masked); default all 0"
    )


def graddrop_masks(signals: Tensor, uniform: Tensor, eps: float) -> Tensor:
    """Masks ``M`` (K×n, float) from the per-task signals (K×n) whose signs are voted on, and ``U`` (n)."""
    purity = 0.5 * (1 + signals.sum(dim=0) / (signals.abs().sum(dim=0) + eps))
    keep_positive = (purity > uniform) & (signals > 0)
    keep_negative = (purity < uniform) & (signals < 0)
    return (keep_positive | keep_negative).to(signals.dtype)


def graddrop_direction(jacobian: Tensor, uniform: Tensor, leak: Tensor, eps: float = EPS_FLAT) -> Tensor:
    """The ``flat`` variant: ``Σ_i (ℓ_i + (1 − ℓ_i) M_i) ∘ g_i`` with masks voted on the rows of ``jacobian``."""
    masks = graddrop_masks(jacobian, uniform, eps)
    leak = leak.to(jacobian).unsqueeze(1)
    return ((leak + (1 - leak) * masks) * jacobian).sum(dim=0)


def graddrop_direction_at_features(
    jacobian: Tensor, features: Sequence[Tensor], uniforms: Sequence[Tensor], leak: Tensor, eps: float = EPS_PAPER
) -> Tensor:
    """The ``paper`` variant: masks voted on ``Σ_batch sign(A) ∘ ∂L_i/∂A`` per feature tensor, broadcast over the batch.

    ``jacobian`` rows are ``∂L_i/∂A`` flattened over ``features`` in order; ``uniforms[k]`` has the shape of
    ``features[k]`` without its batch dimension.
    """
    leak = leak.to(jacobian).view(-1, 1, 1)
    pieces, offset = [], 0
    for activation, uniform in zip(features, uniforms):
        batch = activation.shape[0]
        grads = jacobian[:, offset : offset + activation.numel()].reshape(jacobian.shape[0], batch, -1)
        offset += activation.numel()
        signals = (activation.reshape(1, batch, -1).sign().to(grads) * grads).sum(dim=1)
        masks = graddrop_masks(signals, uniform.reshape(-1).to(grads), eps).unsqueeze(1)
        pieces.append(((leak + (1 - leak) * masks) * grads).sum(dim=0).reshape(-1))
    return torch.cat(pieces)


@register_balancer
class GradDrop(RandomizedBalancer):
    """Keep, per gradient element, only the sign drawn with probability equal to its positive sign purity."""

    name = "graddrop"
    description = "Gradient sign dropout: per element, keep only positive or only negative task gradients."
    requires = "jacobian"
    default_head_gradients = "raw"
    supported_sources = ("params", "features")
    Options = GradDropOptions
    options: GradDropOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        leak = self.options.leak
        if leak is None:
            leak = (0.0,) * self.num_tasks
        if len(leak) != self.num_tasks or not all(0 <= v <= 1 for v in leak):
            raise BalancerError(f"graddrop: leak needs {self.num_tasks} values in [0, 1] (one per task), got {leak}")
        if self.options.variant == "paper" and self.source != "features":
            raise BalancerError("graddrop: variant 'paper' works on the shared activations: use source='features'")
        self.leak = torch.tensor(leak, dtype=torch.float64)

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.jacobian is not None
        ones = torch.ones(self.num_tasks, dtype=torch.float64)
        if self.options.variant == "flat":
            uniform = torch.rand(inputs.jacobian.shape[1], generator=self.generator, dtype=inputs.jacobian.dtype)
            direction = graddrop_direction(inputs.jacobian, uniform.to(inputs.jacobian.device), self.leak)
            return Aggregation(weights=ones, direction=direction)
        if inputs.features is None:
            raise BalancerError(
                "graddrop: variant 'paper' needs source 'features' and the features passed to backward()"
            )
        uniforms = [
            torch.rand(a.shape[1:], generator=self.generator, dtype=inputs.jacobian.dtype).to(a.device)
            for a in inputs.features
        ]
        direction = graddrop_direction_at_features(inputs.jacobian, inputs.features, uniforms, self.leak)
        return Aggregation(weights=ones, direction=direction)
