"""IMTL: Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, "Towards Impartial Multi-task Learning", ICLR 2021
(OpenReview IMPnRXEWpvr). No official code; LibMTL's ``IMTL`` (= IMTL-H), Nash-MTL's ``IMTLG`` and TorchJD's
``IMTLG`` are re-implementations.

* IMTL-G (``variant="g"``, default): ``d = Σ_t α_t g_t`` with ``Σ_t α_t = 1`` (see the sign note below) whose
  projections on the unit gradients ``u_t = g_t/‖g_t‖`` are all equal: ``dᵀu_1 = dᵀu_t``. The paper's closed form
  (``α_{2:T} = g_1 Uᵀ (D Uᵀ)^{-1}``) is, in Gramian form, ``α ∝ G⁺ √diag(G)`` normalised to sum 1 (then
  ``(Gα)_t / √G_tt`` is the same for every t); the pseudo-inverse (TorchJD's generalisation) also covers linearly
  dependent gradients. It is computed on ``G / tr G`` (α does not depend on the scale). Scaling one task's loss
  leaves the direction of d unchanged (only the unit vectors enter the condition).
* IMTL-L (``variant="l"``): loss balance with learnable ``s_t`` (init 0): ``L = Σ_t (e^{s_t} L_t − s_t)``; the weights
  are ``e^{s_t}`` (a loss weighting: no task gradients are computed).
* IMTL-H (``variant="h"``): IMTL-G applied to the IMTL-L-scaled losses: ``ĝ_t = e^{s_t} g_t``, ``α`` from
  ``diag(e^s) G diag(e^s)``, weights ``α_t e^{s_t}`` on the raw gradients (LibMTL's ``IMTL``).

The scales ``s`` (variants l and h) are an ``nn.Parameter`` of the balancer: add ``balancer.parameters()`` to the
optimizer. Each step sets (accumulates into) their gradient analytically, ``∂/∂s_t (e^{s_t} L_t − s_t) =
e^{s_t} L_t − 1``, so an optimizer step moves ``e^{s_t}`` toward ``1/L_t``; ``combine()`` does the same when given
the losses.

Scale: ``Σ α_t = 1`` as in the paper (the mean-gradient scale; not multiplied by K). Heads: the paper updates each
task-specific part with the gradient of its own (scaled) loss, like LibMTL, so ``default_head_gradients="raw"`` means
coefficient 1 (IMTL-G) or ``e^{s_t}`` (IMTL-L/H); ``"weighted"`` gives the heads the shared weights. Gradient
source: the paper computes the gradients on the shared representation ``z`` and applies α to the shared
parameters, which ``source="features"`` reproduces exactly (back-propagating ``Σ α_t ∇_z L_t`` through the encoder
is ``Σ α_t g_t``); the default ``params`` follows LibMTL and the Nash-MTL repo.

Degenerate inputs (the official-style formula divides by ``‖g_t‖``; here nothing is divided by a norm): a task with a
zero gradient gets ``α_t = 0`` (its row of the pseudo-inverse vanishes); identical gradients give uniform α; all-zero
gradients, or ``|1ᵀG⁺√diag G| < 1e-12``, give α = 0 (TorchJD's convention; d = 0). K = 1 gives α = 1.

Deviation (sign): ``v = G⁺√diag G`` gives ``Jᵀv`` the projection +1 on every unit gradient (independent gradients),
but for K ≥ 3 conflicting gradients of unequal norms ``Σ v`` can be negative (half of the random 4-task cases in the
tests), and the paper's normalisation ``Σ α = 1`` (also TorchJD's) then flips the update so that every task's loss
*increases*. Here ``α = v / |Σ v|``: identical whenever ``Σ v > 0``
(always for K = 2), ``Σ α = −1`` otherwise, and the common projection is always positive. Deterministic; the only
state is ``s``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from taskbalance.balancers.base import Aggregation, Balancer, Requirement, StepInputs
from taskbalance.balancers.registry import register_balancer
from taskbalance.balancers.solvers import trace_normalized

Variant = Literal["g", "l", "h"]


class IMTLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    variant: Variant = Field("g", description="g: gradient balance (IMTL-G), l: learnable loss scales, h: both")


def imtl_g_weights(gramian: Tensor) -> Tensor:
    """IMTL-G's α (``Σ α = 1``): equal projections of ``d = Jᵀα`` on every unit task gradient."""
    normalized, trace = trace_normalized(gramian)
    if trace == 0.0:
        return torch.zeros(gramian.shape[0], dtype=torch.float64)
    unnormalized = torch.linalg.pinv(normalized, hermitian=True) @ normalized.diagonal().clamp_min(0).sqrt()
    total = float(unnormalized.sum())
    if abs(total) < 1e-12:
        return torch.zeros_like(unnormalized)
    # |Σ|: Jᵀ(G⁺√diag G) has the positive projection 1 on every unit gradient; dividing by a negative Σ would flip it
    return unnormalized / abs(total)


@register_balancer
class IMTL(Balancer):
    """Impartial MTL: equal projections of the update on the unit task gradients (G), learnable loss scales (L)."""

    name = "imtl"
    description = "Impartial MTL: equal projections on the unit gradients (G), learned loss scales (L), or both (H)."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = IMTLOptions
    options: IMTLOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_scales: nn.Parameter | None = None
        if self.options.variant in ("l", "h"):
            self.log_scales = nn.Parameter(torch.zeros(self.num_tasks))

    @classmethod
    def requires_for(cls, options: Any) -> Requirement:
        """IMTL-L is a loss weighting: it needs no gradients."""
        return "losses" if options.variant == "l" else "gramian"

    @classmethod
    def needs_loss_values_for(cls, options: Any) -> bool:
        """The scales' gradient (variants l and h) needs the loss values."""
        return options.variant in ("l", "h")

    def _scales(self, losses: Tensor) -> Tensor:
        """``e^s`` for this step, after adding ``e^s L − 1`` to the gradient of ``s``."""
        assert self.log_scales is not None
        scales = self.log_scales.detach().exp()
        grad = scales * losses.to(scales) - 1.0
        if self.log_scales.grad is None:
            self.log_scales.grad = grad
        else:
            self.log_scales.grad.add_(grad)
        return scales.double().cpu()

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        variant = self.options.variant
        if variant == "l":
            scales = self._scales(inputs.losses)  # a loss weighting: the heads get e^s whatever head_gradients says
            return Aggregation(weights=scales, head_weights=scales)
        assert inputs.gramian is not None
        if variant == "g":
            weights = imtl_g_weights(inputs.gramian)
            raw_heads = torch.ones_like(weights)
        else:
            raw_heads = self._scales(inputs.losses)
            weights = imtl_g_weights(inputs.gramian * torch.outer(raw_heads, raw_heads)) * raw_heads
        return Aggregation(weights=weights, head_weights=raw_heads if self.head_gradients == "raw" else weights)
