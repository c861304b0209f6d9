"""GradNorm: Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss Balancing
in Deep Multitask Networks", ICML 2018 (PMLR 80:794-803), arXiv 1711.02257.

Rule at step t, with loss weights ``w(t)`` (init 1), ``W`` the last shared layer and ``n_i = ‖∇_W L_i‖``:

    G_i = ‖∇_W (w_i L_i)‖ = w_i n_i,            Ḡ = mean_i G_i,
    L̃_i = L_i(t) / L_i(0),   r_i = L̃_i / mean_j L̃_j,
    L_grad = Σ_i | G_i − sg[Ḡ r_i^α] |,          ∂L_grad/∂w_i = sign(G_i − Ḡ r_i^α) n_i,

the network is updated with ``∇ Σ_i w_i(t) L_i`` (heads weighted), then ``w ← w − lr ∂L_grad/∂w`` and ``w`` is
renormalised to ``Σ_i w_i = K``. The target ``Ḡ r_i^α`` is a constant (``sg``) as in the paper. ``α`` sets the
restoring force towards equal training rates (α = 0 equalises the weighted gradient norms ``G_i``).

Implementation: ``requires = "gramian"`` with source ``last_layer`` (all parameters of the last shared module, bias
included; ``source="params"`` gives LibMTL's all-shared-parameter norms), so ``n_i = √G_ii`` comes from the Gramian
of the raw per-task gradients and ``∂L_grad/∂w`` is analytic (``G_i`` is linear in ``w_i ≥ 0``); the
second-order graph the paper's formulation suggests (``create_graph=True``) is not needed. ``L(0)`` are the losses
of the first step; the weights and ``L(0)`` are buffers, so a resumed run continues exactly.

Defaults: ``α = 1.5`` (LibMTL's default and the value quoted for NYUv2; the study searched α ∈ {0.1, …, 2.0});
``lr = 0.025``: the paper gives no learning rate for ``w`` that we could verify, 0.025 is the method-parameter
learning rate of the Nash-MTL/FAMO codebases; here it is a plain gradient step, separate from the model's optimizer.

There is no official code. Deviations from re-implementations: LibMTL parametrises ``w = K softmax(ŵ)``, steps
``ŵ`` with the model's optimizer, uses all shared parameters and takes ``L(0)`` as the epoch-0 average loss (epoch 0
is plain EW); SamsungLabs, like us, uses the last shared layer and the first-iteration losses (with α = 2).
Safeguards (not in the paper): a gradient step that would make ``w_i`` fall below ``min_weight`` (default 1e-3)
is clipped there before renormalising, because a negative weight would flip task i's gradient; losses must be
``≥ 0`` and ``L_i(0) > 0`` (``L̃`` divides by it and ``r^α`` needs ``r ≥ 0``), checked with a clear error; when every
``L̃_i`` is 0 the rates are taken as equal (``r = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, BalancerError, StepInputs
from taskbalance.balancers.registry import register_balancer


class GradNormOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: float = Field(1.5, ge=0, allow_inf_nan=False, description="asymmetry α of the target G·r_i^α")
    lr: float = Field(0.025, gt=0, allow_inf_nan=False, description="step size of the gradient step on w")
    min_weight: float = Field(
        1e-3, gt=0, allow_inf_nan=False, description="floor of w_i after a step (before renormalising)"
    )


def gradnorm_weight_grad(
    weights: Tensor, grad_norms: Tensor, losses: Tensor, initial_losses: Tensor, alpha: float
) -> Tensor:
    """``∂L_grad/∂w_i = sign(w_i n_i − Ḡ r_i^α) n_i`` with the target held constant (see module docstring)."""
    norms = weights * grad_norms
    ratios = losses / initial_losses
    mean_ratio = ratios.mean()
    rates = ratios / mean_ratio if mean_ratio > 0 else torch.ones_like(ratios)
    target = norms.mean() * rates.pow(alpha)
    return torch.sign(norms - target) * grad_norms


def gradnorm_renormalise(weights: Tensor, grad: Tensor, lr: float, min_weight: float) -> Tensor:
    """One gradient step ``w − lr·grad``, floored at ``min_weight``, rescaled so that ``Σ w = K``."""
    stepped = (weights - lr * grad).clamp_min(min_weight)
    return stepped * (weights.numel() / stepped.sum())


@register_balancer
class GradNorm(Balancer):
    """Loss weights learned so that weighted last-layer gradient norms follow the tasks' relative training rates."""

    name = "gradnorm"
    description = "GradNorm: weights stepped to match w_i‖∇_W L_i‖ to mean·(relative training rate)^α (Chen 2018)."
    requires = "gramian"
    default_source = "last_layer"
    Options = GradNormOptions
    options: GradNormOptions
    weights: Tensor
    initial_losses: Tensor
    has_initial_losses: Tensor

    def __init__(self, tasks: Sequence[str], **kwargs: Any) -> None:
        super().__init__(tasks, **kwargs)
        self.register_buffer("weights", torch.ones(self.num_tasks, dtype=torch.float64))
        self.register_buffer("initial_losses", torch.zeros(self.num_tasks, dtype=torch.float64))
        self.register_buffer("has_initial_losses", torch.zeros((), dtype=torch.bool))

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        losses = inputs.losses.to(self.weights)
        if bool((losses < 0).any()):
            raise BalancerError(f"{self.name} needs non-negative losses (L_i/L_i(0) and r^α), got {losses.tolist()}")
        if not bool(self.has_initial_losses):
            if bool((losses <= 0).any()):
                raise BalancerError(
                    f"{self.name} divides by the first step's losses L_i(0); they must be > 0, got {losses.tolist()}"
                )
            self.initial_losses.copy_(losses)
            self.has_initial_losses.fill_(True)
        current = self.weights.clone()
        grad_norms = inputs.gramian.diagonal().clamp_min(0).sqrt().to(self.weights)
        o = self.options
        grad = gradnorm_weight_grad(current, grad_norms, losses, self.initial_losses, o.alpha)
        self.weights.copy_(gradnorm_renormalise(current, grad, o.lr, o.min_weight))
        return Aggregation(weights=current)
