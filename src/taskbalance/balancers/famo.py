"""FAMO: Liu, Feng, Stone, Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023, arXiv 2306.03792.

Rule (paper Alg. 1/2 and the official code ``Cranial-XIX/FAMO``): logits ``ξ ∈ R^K`` (init 0), ``z = softmax(ξ)``,
``D_i = ℓ_i − b_i + ε`` (``b`` = ``min_losses``, ``ε = 1e-8``). The model is trained with
``Σ_i z_i log D_i / c``, ``c = Σ_j z_j / D_j`` held constant, whose gradient is ``Σ_i w_i ∇ℓ_i`` with

    w_i = z_i / (D_i Σ_j z_j / D_j)          (Σ_i w_i = 1; heads weighted, as the official code back-propagates
                                               the whole loss).

So FAMO is a loss weighting here: :meth:`aggregate` returns ``w`` and the engine back-propagates ``Σ_i w_i ℓ_i``
(the same gradient). After ``optimizer.step()`` the user calls :meth:`post_step` with the losses re-evaluated on
the same batch; with ``δ_i = log D_i(before) − log D_i(after)`` the logits take one Adam step (lr ``β``, L2
``weight_decay = γ``, torch's betas (0.9, 0.999) and eps 1e-8) on the gradient ``(∂z/∂ξ)ᵀ δ = z ⊙ (δ − zᵀδ)``.
A task whose loss decreased less than the others gains logit. Every ``backward()``/``combine()`` must be followed
by one :meth:`post_step` before the next (a clear error otherwise: without it FAMO silently stops adapting).

Defaults: ``β = 0.025``; ``γ = 1e-3``, the paper's default and its choice for NYUv2, QM9 and CelebA (1e-2 for
Cityscapes, 0 for the 2-objective toy); the official ``methods/weight_methods.py`` default is 1e-5 and its CLI
default 1e-2. ``min_losses`` defaults to 0 (the toy uses negative bounds since its losses are negative).

Deviations: the logits and Adam moments are float64 buffers updated by our own Adam step (numerically the update
of ``torch.optim.Adam(weight_decay=γ)``), so they live in ``state_dict()`` and are never exposed to the user's
optimizer. The official trainers clip the shared gradient to norm 1 (``famo.py``; in ``weight_methods.py`` the
clip runs before ``backward()`` and is a no-op); clipping is left to the trainer. ``ℓ_i < b_i`` is an error
(``log`` of a non-positive number); ``ℓ_i = b_i`` is allowed (``D_i = ε``, which gives that task almost all the
weight, as in the official code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, BalancerError, StepInputs
from taskbalance.balancers.helpers import check_task_keys
from taskbalance.balancers.registry import register_balancer

EPS = 1e-8
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

Bound = Annotated[float, Field(allow_inf_nan=False)]


class FAMOOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    w_lr: float = Field(0.025, gt=0, allow_inf_nan=False, description="β, Adam learning rate of the logits")
    gamma: float = Field(
        1e-3, ge=0, allow_inf_nan=False,
        description="γ, Adam weight decay of the logits (paper: 1e-3 NYUv2, 1e-2 Cityscapes)",
    )
    min_losses: Bound | dict[str, Bound] = Field(
        0.0, description="b, lower bound of each loss (one value or task -> value); losses must stay >= b"
    )


def famo_weights(logits: Tensor, shifted_losses: Tensor) -> Tensor:
    """``w_i = z_i / (D_i Σ_j z_j/D_j)`` with ``z = softmax(logits)`` and ``D`` = ``shifted_losses``."""
    scaled = torch.softmax(logits, dim=0) / shifted_losses
    return scaled / scaled.sum()


def famo_logit_grad(logits: Tensor, shifted_before: Tensor, shifted_after: Tensor) -> Tensor:
    """``(∂z/∂ξ)ᵀ δ = z ⊙ (δ − zᵀδ)`` with ``δ = log D(before) − log D(after)``."""
    z = torch.softmax(logits, dim=0)
    delta = shifted_before.log() - shifted_after.log()
    return z * (delta - z @ delta)


def adam_step(
    param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int, lr: float, weight_decay: float
) -> None:
    """One in-place Adam step with L2 weight decay (``torch.optim.Adam``'s update); ``step`` counts from 1."""
    grad = grad + weight_decay * param
    beta1, beta2 = ADAM_BETAS
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq / (1 - beta2**step)).sqrt().add_(ADAM_EPS)
    param.sub_(lr / (1 - beta1**step) * exp_avg / denom)


@register_balancer
class FAMO(Balancer):
    """Fast adaptive multitask optimization: loss weights from logits learned on the observed log-loss decrease."""

    name = "famo"
    needs_post_step_losses = True
    description = "FAMO: w ∝ softmax(ξ)/ℓ; post_step(new_losses) updates ξ from the log-loss decrease (Liu 2023)."
    requires = "losses"
    Options = FAMOOptions
    options: FAMOOptions
    min_losses: Tensor
    logits: Tensor
    adam_exp_avg: Tensor
    adam_exp_avg_sq: Tensor
    adam_steps: Tensor
    losses_before: Tensor
    awaiting_post_step: Tensor

    def __init__(self, tasks: Sequence[str], **kwargs: Any) -> None:
        super().__init__(tasks, **kwargs)
        k = self.num_tasks
        bounds = self.options.min_losses
        if isinstance(bounds, dict):
            check_task_keys(f"{self.name}: option min_losses", list(bounds), self.tasks)
            values = [bounds[t] for t in self.tasks]
        else:
            values = [bounds] * k
        self.register_buffer("min_losses", torch.tensor(values, dtype=torch.float64), persistent=False)
        self.register_buffer("logits", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("adam_exp_avg", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("adam_exp_avg_sq", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("losses_before", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("awaiting_post_step", torch.zeros((), dtype=torch.bool))

    def _shifted(self, losses: Tensor, when: str) -> Tensor:
        below = losses < self.min_losses
        if bool(below.any()):
            bad = [t for t, b in zip(self.tasks, below) if b]
            raise BalancerError(
                f"{self.name} takes log(loss − min_losses): the {when} losses of {bad} are {losses[below].tolist()}, "
                f"below min_losses {self.min_losses[below].tolist()}; set min_losses to a lower bound of the losses"
            )
        return losses - self.min_losses + EPS

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        if bool(self.awaiting_post_step):
            raise BalancerError(
                f"{self.name}: post_step(new_losses) was not called after the previous step; call it after every "
                "optimizer.step() with the losses re-evaluated on the same batch"
            )
        losses = inputs.losses.to(self.logits)
        weights = famo_weights(self.logits, self._shifted(losses, "current"))
        self.losses_before.copy_(losses)
        self.awaiting_post_step.fill_(True)
        return Aggregation(weights=weights)

    def learn_after_step(self, losses: Tensor) -> None:
        """Update the logits from the (checked) losses of the same batch after ``optimizer.step()``."""
        if not bool(self.awaiting_post_step):
            raise BalancerError(f"{self.name}: post_step() must follow a backward() (or combine()) step")
        after = losses.to(self.logits)
        grad = famo_logit_grad(self.logits, self._shifted(self.losses_before, "stored"), self._shifted(after, "new"))
        self.adam_steps += 1
        adam_step(
            self.logits, grad, self.adam_exp_avg, self.adam_exp_avg_sq, int(self.adam_steps), self.options.w_lr,
            self.options.gamma,
        )
        self.awaiting_post_step.fill_(False)
