"""IMGrad: Zhou, Liu, Zhao, Gong, "Injecting Imbalance Sensitivity for Multi-Task Learning", IJCAI 2025,
arXiv 2503.08006. Official code: ``zzpustc/IMGrad`` (``nyuv2/utils.py::imgrad``; only the CAGrad-based variant is
released, and only that one is implemented here).

Rule (CAGrad plus a projected-norm term, paper §5.1): with ``g_0`` the mean gradient, ``g_m`` MGDA's min-norm
direction and ``μ = cos θ = cos(g_0, g_m)`` (adaptive: small when the gradient norms are imbalanced),
``w* = argmin_{w ∈ Δ} (κ − cos θ) g_wᵀ g_0 + cos θ · √φ ‖g_w‖``, ``√φ = c ‖g_0‖``,
``d = g_0 + (√φ / ‖g_w*‖) g_w*``, then ``d / (1 + c²)`` (``rescale=1``) and ×K, exactly like CAGrad
(:func:`taskbalance.balancers.solvers.conflict_averse_weights` does both).

* ``variant="code"`` (default): ``κ = 1.5``, the released code (NYUv2 ``imgrad``).
* ``variant="paper"``: ``κ = 1``, Eq. (11) of the paper. Eq. (11) as printed reads ``cos θ · √φ ‖g_ω‖²``; the square
  is treated as a typo and not applied: it makes that term cubic in the gradient scale while the other is quadratic,
  so the weights would change with a global rescaling of the losses, and neither the derivation (Eq. 8, where the
  √φ term carries ``‖g_ω‖``) nor the released code has it.

Defaults: ``alpha`` (the paper's c) = 0.8 as in the official ``run.sh`` for NYUv2 and Cityscapes, ``rescale = 1``.
Scale ×K (``overwrite_grad``); heads keep their raw loss gradients (the official code overwrites only the shared
``.grad``): ``default_head_gradients="raw"``. ``g_m`` comes from the official MGDA solver without normalisation
(:func:`taskbalance.balancers.solvers.min_norm_point`); ``cos θ`` uses ``torch.cosine_similarity``'s ``eps=1e-8``
per norm, on the trace-normalised Gramian (cos θ does not depend on the scale). Degenerate inputs: ``g_m = 0``
(Pareto-stationary gradients) gives ``cos θ = 0`` and a pure "push-away" linear objective; CAGrad's factored
quadratic form (no NaN on a rounded, slightly indefinite Gramian) and its rule for ``‖g_w*‖ ≈ 0`` (``λ = 0``, finite
weights) apply; an all-zero Gramian returns the ``c = 0`` weights (``d = 0``).
The K = 2 Cityscapes script expands ``g_wᵀg_0`` and, by operator precedence, multiplies only part of it by ``(1.5 −
cos θ)``; that looks like a bug and is not replicated. Stateless, deterministic.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from taskbalance.balancers.base import Aggregation, Balancer, StepInputs
from taskbalance.balancers.registry import register_balancer
from taskbalance.balancers.solvers import Rescale, conflict_averse_weights, min_norm_point, trace_normalized

Variant = Literal["code", "paper"]
#: ``torch.nn.functional.cosine_similarity``'s default ``eps``.
COSINE_EPS = 1e-8


class IMGradOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: float = Field(0.8, ge=0, description="CAGrad radius c (official run.sh: 0.8)")
    rescale: Rescale = Field(1, description="divide the update by 1 (0), 1 + c² (1, official) or 1 + c (2)")
    variant: Variant = Field("code", description="code: (1.5 − cos θ) as released; paper: (1 − cos θ) of Eq. 11")


def mean_mgda_cosine(gramian: Tensor) -> float:
    """``cos θ`` between the mean gradient and MGDA's min-norm direction, from the Gramian."""
    normalized, trace = trace_normalized(gramian)
    if trace == 0.0:
        return 0.0
    k = gramian.shape[0]
    mean = torch.full((k,), 1.0 / k, dtype=torch.float64)
    mgda = min_norm_point(normalized)
    dot = float(mean @ normalized @ mgda)
    mean_norm = float((mean @ normalized @ mean).clamp_min(0).sqrt())
    mgda_norm = float((mgda @ normalized @ mgda).clamp_min(0).sqrt())
    return dot / (max(mean_norm, COSINE_EPS) * max(mgda_norm, COSINE_EPS))


def imgrad_weights(gramian: Tensor, alpha: float = 0.8, rescale: Rescale = 1, variant: Variant = "code") -> Tensor:
    """IMGrad's coefficients of the task gradients (×K, rescaled), from their Gramian."""
    cosine = mean_mgda_cosine(gramian)
    offset = 1.5 if variant == "code" else 1.0
    return conflict_averse_weights(gramian, alpha, rescale, linear_coef=offset - cosine, norm_coef=cosine)


@register_balancer
class IMGrad(Balancer):
    """CAGrad with an imbalance-sensitive trade-off set by the angle between the mean and the MGDA direction."""

    name = "imgrad"
    description = "Imbalance-sensitive CAGrad: the mean/min-norm trade-off follows cos(g_0, g_MGDA)."
    requires = "gramian"
    default_head_gradients = "raw"
    Options = IMGradOptions
    options: IMGradOptions

    def aggregate(self, inputs: StepInputs) -> Aggregation:
        assert inputs.gramian is not None
        options = self.options
        return Aggregation(weights=imgrad_weights(inputs.gramian, options.alpha, options.rescale, options.variant))
