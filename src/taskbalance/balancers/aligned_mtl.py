"""Aligned-MTL: Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for Multi-Task
Learning", CVPR 2023, arXiv 2305.19000. Official code: ``SamsungLabs/MTL`` (``code/optim/aligned/solver.py::
ProcrustesSolver``, ``balancer.py``).

Rule: eigendecompose the Gramian ``G = V Λ Vᵀ`` and keep the R eigenpairs with ``λ > tol``; the balance
transformation is ``B = √σ · V_R Λ_R^{-1/2} V_Rᵀ`` and the aligned task gradients are the rows of ``Bᵀ J`` (the
official columns ``G_cols B``): orthogonal, all of norm ``√σ``, so the gradient system has condition number 1 (for
full rank, ``Bᵀ J`` is ``√σ`` times the orthogonal polar factor of J). The update is their **sum**,
``d = Σ_t ĝ_t = Jᵀ (B 1)``, as in the official code and LibMTL, so the weights are ``B 1`` (TorchJD's ``AlignedMTL``
uses the mean preference vector, i.e. 1/K of this).

Official details kept: ``tol = λ_max · K · eps(float32)`` (the official ``torch.finfo().eps`` of the default dtype;
the task gradients are float32, so smaller eigenvalues are rounding noise); ``σ = λ_min`` of the kept eigenvalues
(``scale_mode="min"``, default), their median (``"median"``, torch's lower median) or mean (``"rmse"``).
``torch.symeig`` became ``torch.linalg.eigh``. Heads keep their raw loss gradients (official
``scale_decoder_grad=False``): ``default_head_gradients="raw"``. Aligned-MTL-UB is ``source="features"``.

Properties: a global loss scale ``s`` scales d by ``s`` (σ scales with s²); with orthogonal task gradients d is
``√σ Σ_t u_t`` whatever the individual norms. Degenerate inputs: rank-deficient Gramians (identical or zero
gradients) use the kept eigenpairs only (identical gradients give ``d = Σ_t g_t``; a zero-gradient task gets weight
0); all-zero gradients (rank 0, an indexing error in the official code) give weights 1 (TorchJD's identity
fallback; d = 0). Stateless, deterministic.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer

ScaleMode = Literal["min", "median", "rmse"]


class AlignedMTLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    scale_mode: ScaleMode = Field(
        "min", description="squared norm σ of the aligned gradients: min, median or mean (rmse) eigenvalue"
    )


def balance_transformation(gramian: Tensor, scale_mode: ScaleMode = "min") -> Tensor:
    """``B = √σ V_R Λ_R^{-1/2} V_Rᵀ`` (identity when every eigenvalue is below the tolerance)."""
    k = gramian.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(gramian)
    tol = float(eigenvalues.max()) * k * torch.finfo(torch.float32).eps
    keep = eigenvalues > tol
    if not bool(keep.any()):
        return torch.eye(k, dtype=gramian.dtype)
    values, vectors = eigenvalues[keep], eigenvectors[:, keep]
    if scale_mode == "min":
        sigma = values.min()
    elif scale_mode == "median":
        sigma = values.median()
    else:
        sigma = values.mean()
    return sigma.sqrt() * (vectors / values.sqrt()) @ vectors.T


def aligned_mtl_weights(gramian: Tensor, scale_mode: ScaleMode = "min") -> Tensor:
    """Aligned-MTL's coefficients of the task gradients: ``B 1`` (the sum of the aligned gradients)."""
    return balance_transformation(gramian, scale_mode).sum(dim=1)


@register_balancer
class AlignedMTL(Balancer):
    """Align the task gradients to an orthogonal, equal-norm system (Procrustes) and sum them."""

    name = "aligned_mtl"
    description = "Sum of the task gradients aligned to an orthogonal equal-norm system (eigendecomposition of G)."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = AlignedMTLOptions
    options: AlignedMTLOptions

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        return Aggregation(weights=aligned_mtl_weights(inputs.gramian, self.options.scale_mode))
