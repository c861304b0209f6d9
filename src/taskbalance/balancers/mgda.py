"""MGDA and MGDA-UB: Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018,
arXiv 1810.04650. Official code: ``isl-org/MultiObjectiveOptimization`` (``multi_task/min_norm_solvers.py``,
``train_multi_task.py``).

Rule: ``α* = argmin_{α ∈ Δ_K} ‖Σ_t α_t ĝ_t‖² = argmin_{α ∈ Δ_K} αᵀ Ĝ α`` with ``ĝ_t = g_t / n_t``, and the step is
the gradient of ``Σ_t α*_t L_t`` on the **raw** losses: ``d = Σ_t α*_t g_t`` (the normalisation only shapes α,
exactly as in the official training script, which back-propagates ``Σ_t α_t L_t`` after the solve). In Gramian
form ``Ĝ = G / (n nᵀ)``. The normalisers (official ``gradient_normalizers``; "optional and not included in the
paper"): ``none`` ``n_t = 1`` (the paper, default), ``l2`` ``n_t = ‖g_t‖``, ``loss`` ``n_t = L_t``, ``loss+``
``n_t = L_t ‖g_t‖`` (the repo's ``sample.json``). A normaliser that is not positive (a zero gradient, a zero or
negative loss) is replaced by 1 instead of dividing by it (the official code would produce NaN/inf).

Solver: the official ``MinNormSolver.find_min_norm_element`` (:func:`taskbalance.balancers.solvers.min_norm_point`):
closed form for the best pair, then projected gradient with exact line search, L1 tolerance ``tol`` = 1e-5 (the
official ``STOP_CRIT``), at most ``max_iter`` = 250 iterations (the official ``MAX_ITER``, which the official loop
forgets to count). The pair formula clips the weights to [0.001, 0.999] like the official code, so a task whose
gradient is dominated keeps a weight of 0.001. ``tol`` and ``max_iter`` are options (a smaller ``tol`` converges to
the exact min-norm point; the official tolerance can stop visibly short of it for K ≥ 3).

Scale: the official code uses ``Σ α_t = 1`` (``scale=False``, the default here); ``scale=True`` multiplies the
weights by K like the Nash-MTL repo's MGDA, which puts the update on the sum-of-losses scale of ``uniform``.
Heads: weighted by α (the official final step is ``Σ_t α_t L_t .backward()``), so ``default_head_gradients`` is
``weighted``.

MGDA-UB (``mgda-ub``) is the same method with the gradients taken on the shared representation ``z``
(``source="features"``; the official code flattens ``∇_z L_t`` over batch and features before the dot products,
which is what the engine's ``features`` source does). Degenerate inputs: K = 1 gives α = 1; zero or identical
gradients are handled by the pair formula (all-zero gradients give α = (0.999, 0.001, 0, ...), d = 0). Stateless,
deterministic.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer
from taskbalance.balancers.solvers import min_norm_point

Normalization = Literal["none", "l2", "loss", "loss+"]


class MGDAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    normalization: Normalization = Field(
        "none", description="normaliser n_t used only in the solve: none (paper), l2, loss, loss+ (repo's sample.json)"
    )
    scale: bool = Field(False, description="multiply the weights by K (Nash-MTL repo) instead of Σα=1 (official)")
    tol: float = Field(1e-5, gt=0, description="L1 change of α that stops the min-norm solver (official 1e-5)")
    max_iter: int = Field(250, ge=1, description="iterations of the min-norm solver for K ≥ 3 (official 250)")


def gradient_normalizers(gramian: Tensor, losses: Tensor, normalization: Normalization) -> Tensor:
    """``n_t`` of the official ``gradient_normalizers``; entries that are not positive become 1."""
    norms = gramian.diagonal().clamp_min(0).sqrt()
    if normalization == "none":
        normalizers = torch.ones_like(norms)
    elif normalization == "l2":
        normalizers = norms
    elif normalization == "loss":
        normalizers = losses.to(norms)
    else:
        normalizers = losses.to(norms) * norms
    return torch.where(normalizers > 0, normalizers, torch.ones_like(normalizers))


def mgda_weights(
    gramian: Tensor,
    losses: Tensor | None = None,
    normalization: Normalization = "none",
    scale: bool = False,
    tol: float = 1e-5,
    max_iter: int = 250,
) -> Tensor:
    """MGDA's loss weights ``α*`` (``Σ α = 1``, or K with ``scale``) from the Gramian of the raw task gradients."""
    if losses is None:
        if normalization in ("loss", "loss+"):
            raise ValueError(f"normalization {normalization!r} needs the task losses")
        losses = torch.ones(gramian.shape[0], dtype=torch.float64)
    normalizers = gradient_normalizers(gramian, losses, normalization)
    alpha = min_norm_point(gramian / torch.outer(normalizers, normalizers), tol=tol, max_iter=max_iter)
    return alpha * gramian.shape[0] if scale else alpha


@register_balancer
class MGDA(Balancer):
    """Min-norm point of the convex hull of the task gradients, applied as loss weights."""

    name = "mgda"
    description = "Min-norm convex combination of the task gradients (MinNormSolver), applied as loss weights."
    requires = "gramian"
    default_head_gradients = "weighted"
    Options = MGDAOptions
    options: MGDAOptions

    @classmethod
    def needs_loss_values_for(cls, options: Any) -> bool:
        """Loss normalisation reads the loss values, so combine() must be given them."""
        return options.normalization in ("loss", "loss+")

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        options = self.options
        weights = mgda_weights(
            inputs.gramian, inputs.losses, options.normalization, options.scale, options.tol, options.max_iter
        )
        return Aggregation(weights=weights)


@register_balancer
class MGDAUB(MGDA):
    """MGDA-UB: MGDA on the gradients of the shared representation (one backward through the encoder)."""

    name = "mgda-ub"
    description = "MGDA on the gradients w.r.t. the shared representation (the paper's upper-bound variant)."
    default_source = "features"
