"""UPGrad: Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232.
Official code: TorchJD (``torchjd.aggregation.UPGrad``, ``torchjd._linalg._dual_cone.QuadprogProjector``).

Rule: ``d = Σ_i p_i π_J(g_i)``, where ``π_J`` is the Euclidean projection onto the dual cone ``{y : J y ≥ 0}`` of the
task gradients and ``p`` a preference vector. By the paper's Proposition 1, ``π_J(Jᵀu) = Jᵀv`` with
``v = argmin_{v ≥ u} vᵀ G v``, so the weights are ``w = Σ_i v^{(i)}``, each ``v^{(i)}`` the solution of a K-dim QP with
lower bound ``u = p_i e_i``. Every projected gradient, hence ``d``, conflicts with no task: ``J d ≥ 0``.

Implementation as in TorchJD: the QP is solved on ``G / tr(G) + reg_eps·I`` (``tr(G) < norm_eps`` gives ``G := 0``)
in float64 with ``quadprog`` (``min ½ vᵀ G v`` s.t. ``v ≥ u``); a QP that quadprog cannot solve raises an error.
Defaults (TorchJD): ``p = 1/K``, ``norm_eps = reg_eps = 1e-4``. ``norm_eps`` is an absolute threshold on
``Σ‖g_i‖²`` (as in TorchJD), so task gradients with a total squared norm below 1e-4 are treated as zero and give
``w = p``; ``reg_eps`` biases the projection slightly toward the preference vector.

Scale: ``p = 1/K`` puts UPGrad on the scale of the **mean** gradient (non-conflicting gradients give their mean),
as in TorchJD and the paper; it is not multiplied by K. Heads keep their raw loss gradients (TorchJD's
``mtl_backward`` and LibMTL): ``default_head_gradients="raw"``. Degenerate inputs: zero or identical gradients are
regularised by ``reg_eps``; all-zero gradients give ``w = p`` and ``d = 0``. Stateless, deterministic.
"""

from __future__ import annotations

import numpy as np
import quadprog
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer


class UPGradOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    norm_eps: float = Field(1e-4, ge=0, description="tr(G) below this counts as all-zero gradients (TorchJD 1e-4)")
    reg_eps: float = Field(1e-4, gt=0, description="ridge added to the normalised Gramian's diagonal (TorchJD 1e-4)")


def dual_cone_weights(gramian: Tensor, lower: Tensor) -> Tensor:
    """``argmin_{v ≥ lower} ½ vᵀ G v`` for a positive-definite ``G`` (quadprog), i.e. ``π_J(Jᵀ lower) = Jᵀ v``."""
    g = gramian.detach().double().cpu().numpy()
    k = g.shape[0]
    try:
        solution = quadprog.solve_qp(g, np.zeros(k), np.eye(k), lower.detach().double().cpu().numpy())[0]
    except ValueError as error:
        raise RuntimeError(f"UPGrad's dual-cone QP could not be solved ({error}); Gramian {g.tolist()}") from error
    return torch.from_numpy(np.asarray(solution, dtype=np.float64))


def upgrad_weights(gramian: Tensor, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> Tensor:
    """UPGrad's coefficients of the task gradients (mean preference ``1/K``), from their Gramian."""
    k = gramian.shape[0]
    trace = float(gramian.diagonal().sum())
    normalized = gramian / trace if trace >= norm_eps else torch.zeros_like(gramian)
    regularized = normalized + reg_eps * torch.eye(k, dtype=torch.float64)
    lower_bounds = torch.eye(k, dtype=torch.float64) / k  # row i: u = p_i e_i with p = 1/K
    return torch.stack([dual_cone_weights(regularized, u) for u in lower_bounds]).sum(dim=0)


@register_balancer
class UPGrad(Balancer):
    """Average of the task gradients each projected onto the dual cone of all of them (no task conflicts)."""

    name = "upgrad"
    description = "Mean of the task gradients projected onto the dual cone {y: Jy ≥ 0} (TorchJD's UPGrad)."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = UPGradOptions
    options: UPGradOptions

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        return Aggregation(weights=upgrad_weights(inputs.gramian, self.options.norm_eps, self.options.reg_eps))
