"""DB-MTL: Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang, Kwok, "Dual-Balancing for Multi-Task Learning",
Neural Networks 2025, arXiv 2308.12029. Official code: LibMTL ``weighting/DB_MTL.py``.

Rule, at step k (k = 1, 2, ...):

1. loss-scale balancing: train on ``log(L_i + 1e-8)``, whose gradient is ``g_i / (L_i + 1e-8)``;
2. gradient-magnitude balancing on an EMA of those log-loss gradients::

       ĝ_i ← β_k ĝ_i + (1 − β_k) ∇ log(L_i + 1e-8),    β_k = β / k^σ,    ĝ_i initialised to 0
       α = max_i ‖ĝ_i‖,    d = Σ_i α ĝ_i / (‖ĝ_i‖ + 1e-8)

   (every task rescaled to the largest norm; a sum, not a mean).

The engine hands over J of the *raw* losses, so the log-loss gradients are computed as ``J_i / (L_i + 1e-8)``
(exactly the chain rule). Defaults: ``β = 0.9``, ``σ = 0`` (LibMTL ``DB_beta``, ``DB_beta_sigma``); no bias
correction of the EMA (LibMTL: the first buffer is ``(1 − β) ∇ log L``). The direction is explicit; ``weights``
report ``α / (‖ĝ_i‖ + 1e-8)``, the factor applied to each buffered gradient (0 for a zero buffer, which adds
nothing to ``d``; a near-zero but non-zero buffer gets the huge factor of the official code).

Heads: raw gradients of the *log*-losses, as LibMTL (``log(L_i).backward()`` per task, then only the shared
``.grad`` is overwritten), i.e. head loss coefficients ``1 / (L_i + 1e-8)`` (``head_weights`` of the Aggregation);
``head_gradients="weighted"`` gives the heads ``α / ‖ĝ_i‖`` times that instead.

State: the EMA buffer ``ema`` (K×d on the gradient source's device) is created at the first step, when d is known;
``state_dict()`` holds it (empty before the first step) and ``load_state_dict()`` accepts either size.
Sources: ``params`` only, as LibMTL (which refuses ``rep_grad``): an EMA of per-sample feature gradients would mix
different batches' examples. Losses must be non-negative (their logarithm is taken).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, BalancerError, StepInputs
from taskbalance.balancers.registry import register_balancer

LOG_EPS = 1e-8


class DBMTLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    beta: float = Field(0.9, ge=0, le=1, description="EMA rate β of the log-loss gradients (LibMTL DB_beta)")
    sigma: float = Field(0.0, ge=0, description="decay of the EMA rate: β_k = β / k^σ (LibMTL DB_beta_sigma)")


def db_mtl_update(
    ema: Tensor, jacobian: Tensor, losses: Tensor, step: int, beta: float = 0.9, sigma: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """One DB-MTL step: ``(direction, weights, new_ema)`` from the buffer, J of the raw losses and the losses.

    ``step`` is k ≥ 1; ``weights`` (float64 CPU) are ``α / (‖ĝ_i‖ + 1e-8)`` (0 where ``ĝ_i = 0``).
    """
    log_grads = jacobian / (losses.to(jacobian) + LOG_EPS).unsqueeze(1)
    rate = beta / step**sigma
    new_ema = rate * ema + (1 - rate) * log_grads
    norms = new_ema.double().norm(dim=1).cpu()
    weights = torch.where(norms > 0, norms.max() / (norms + LOG_EPS), torch.zeros_like(norms))
    return weights.to(new_ema) @ new_ema, weights, new_ema


@register_balancer
class DBMTL(Balancer):
    """Log-losses, then every task's EMA log-loss gradient rescaled to the largest norm."""

    name = "db_mtl"
    description = "Dual-Balancing: log-losses, then EMA task gradients rescaled to the largest norm and summed."
    requires = "jacobian"
    needs_loss_values = True
    default_head_gradients = "raw"
    supported_sources = ("params",)
    Options = DBMTLOptions
    options: DBMTLOptions
    ema: Tensor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("ema", torch.zeros(0))

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        jacobian = inputs.jacobian
        assert jacobian is not None
        if bool((inputs.losses + LOG_EPS <= 0).any()):
            raise BalancerError(
                f"db_mtl takes the logarithm of the losses, which must be non-negative: {inputs.losses.tolist()}"
            )
        if self.ema.numel() == 0:
            self.ema = torch.zeros_like(jacobian)
        if self.ema.shape != jacobian.shape:
            raise BalancerError(
                f"db_mtl: the gradient source changed size from {self.ema.shape[1]} to {jacobian.shape[1]}"
            )
        direction, weights, self.ema = db_mtl_update(
            self.ema.to(jacobian), jacobian, inputs.losses, inputs.step + 1, self.options.beta, self.options.sigma
        )
        head_weights = 1 / (inputs.losses + LOG_EPS)
        if self.head_gradients == "weighted":
            head_weights = head_weights * weights
        return Aggregation(weights=weights, direction=direction, head_weights=head_weights)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        stored = state_dict.get(prefix + "ema")
        if stored is not None and stored.shape != self.ema.shape:
            self.ema = torch.empty(stored.shape, dtype=stored.dtype, device=self.ema.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
