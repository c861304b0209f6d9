"""The two-objective toy problem of CAGrad / Nash-MTL / FAMO / IMGrad, vectorised over starting points.

Definition (the official code, ``Cranial-XIX/CAGrad/toy.py`` and ``AvivNavon/nash-mtl/experiments/toy/problem.py``;
the papers print ``- tanh`` in f2, every code uses ``+ tanh``)::

    f1 = log(max(|0.5(-x1 - 7) - tanh(-x2)|, 5e-6)) + 6
    f2 = log(max(|0.5(-x1 + 3) + tanh(-x2) + 2|, 5e-6)) + 6
    q1 = ((-x1 + 7)² + 0.1(-x2 - 8)²)/10 - 20        q2 = ((-x1 - 7)² + 0.1(-x2 - 8)²)/10 - 20
    c1 = max(tanh(x2/2), 0)                          c2 = max(tanh(-x2/2), 0)
    L1 = s1 (c1 f1 + c2 q1)                          L2 = s2 (c1 f2 + c2 q2)

with per-paper loss scales ``(s1, s2)``: CAGrad (1, 1), Nash-MTL / FAMO (0.1, 1), IMGrad Fig. 2 (0.9, 0.1).

Exact Pareto set. It lies in the lower half-plane, where ``c1 = 0`` and ``L_i = s_i c(x2) q_i`` with
``c = tanh(-x2/2)``; scaling the losses does not move it. A point is Pareto-stationary when
``w ∇(L1/s1) + (1-w) ∇(L2/s2) = 0`` for some ``w ∈ [0, 1]``. The x1-component gives ``w = (x1 + 7)/14``
(so ``x1 ∈ [-7, 7]``); with it the combined quadratic is ``q_w = (49 - x1² + 0.1(x2 + 8)²)/10 - 20`` and the
x2-component reads

    h(x2; x1) = -½ (1 - c²) q_w + 0.02 c (x2 + 8) = 0,

which has one root in ``x2 ∈ (-10, -8)`` for every ``x1 ∈ [-7, 7]``. The papers draw the line ``x2 = -8.3552``: it is
the root at ``x1 = 0``; at ``x1 = ±7`` the root is ``x2 ≈ -8.4345``, so the exact set is a shallow arc below the line.
The minimiser of ``L1 + L2`` (the scaled sum) is the Pareto point with ``w = s1/(s1 + s2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LOWER = 5e-6
#: Task names of the two objectives (the balancers' ``tasks``).
TASKS = ("loss1", "loss2")
#: The horizontal line that every paper's plotting code draws as the Pareto set (exact only at x1 = 0).
PAPER_PARETO_X2 = -8.3552
#: x1 range of the Pareto set (w = 0 at -7, w = 1 at 7).
PARETO_X1_RANGE = (-7.0, 7.0)
_X2_BRACKET = (-10.0, -8.0)
_BISECTION_STEPS = 80


@dataclass(frozen=True)
class ToyProblem:
    """The toy objectives with loss scales ``scales = (s1, s2)`` (``ℓ_i = s_i L_i``)."""

    scales: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.scales) != 2 or not all(s > 0 for s in self.scales):
            raise ValueError(f"the toy problem needs two positive loss scales, got {self.scales}")

    def losses(self, x: Tensor) -> Tensor:
        """The two (scaled) losses at every row of ``x`` (S×2) → S×2; differentiable."""
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"x must be S×2 (one row per starting point), got shape {tuple(x.shape)}")
        x1, x2 = x[:, 0], x[:, 1]
        f1 = _clamp_min((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
        f2 = _clamp_min((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
        q1 = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
        q2 = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
        c1 = _clamp_min(torch.tanh(0.5 * x2), 0.0)
        c2 = _clamp_min(torch.tanh(-0.5 * x2), 0.0)
        scales = torch.tensor(self.scales, dtype=x.dtype, device=x.device)
        return torch.stack([c1 * f1 + c2 * q1, c1 * f2 + c2 * q2], dim=1) * scales

    def losses_and_jacobians(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Losses (S×2) and per-start Jacobians (S×2×2, row i = ∇_x ℓ_i) from one batched forward and backward.

        The rows of ``x`` do not interact, so with one copy of ``x`` per task, the gradient of
        ``Σ_s ℓ_1(copy1_s) + Σ_s ℓ_2(copy2_s)`` holds every ``∇ ℓ_i(x_s)`` in copy i's rows.
        """
        with torch.enable_grad():
            copies = x.detach().unsqueeze(0).repeat(2, 1, 1).requires_grad_(True)
            losses = self.losses(copies.reshape(-1, 2)).reshape(2, -1, 2)
            (gradients,) = torch.autograd.grad(losses[0, :, 0].sum() + losses[1, :, 1].sum(), copies)
        return losses[0].detach(), gradients.transpose(0, 1)

    def loss_lower_bounds(self) -> tuple[float, float]:
        """Strict lower bounds of the two losses, ``-21 s_i`` (FAMO's ``min_losses`` in the official toy)."""
        return (-21.0 * self.scales[0], -21.0 * self.scales[1])

    def optimum(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The minimiser of ``ℓ1 + ℓ2`` (a point of the Pareto set), shape (2,)."""
        s1, s2 = self.scales
        x1 = torch.tensor([7.0 * (2 * s1 / (s1 + s2) - 1)], dtype=dtype)
        return torch.stack([x1, pareto_x2(x1)], dim=1)[0]


def _clamp_min(t: Tensor, bound: float) -> Tensor:
    """``max(t, bound)`` with gradient 1 at ``t == bound``, as ``torch.clamp`` had when the papers ran the toy.

    Recent PyTorch gives ``torch.clamp`` the subgradient 0 at its bound; with it the start (0, 0) (where
    ``tanh(±x2/2) = 0``) would have a zero gradient and never move, unlike in every paper's figure.
    """
    return torch.where(t >= bound, t, torch.full_like(t, bound))


def pareto_x2(x1: Tensor) -> Tensor:
    """The x2 of the exact Pareto set at each ``x1 ∈ [-7, 7]`` (vectorised bisection on h, see the module doc)."""
    if bool(((x1 < PARETO_X1_RANGE[0]) | (x1 > PARETO_X1_RANGE[1])).any()):
        raise ValueError(f"the Pareto set only spans x1 in {list(PARETO_X1_RANGE)}")
    low = torch.full_like(x1, _X2_BRACKET[0], dtype=torch.float64)
    high = torch.full_like(low, _X2_BRACKET[1])
    x1 = x1.double()
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (low + high)
        negative = _pareto_residual(x1, mid) < 0  # h < 0 below the root, h > 0 above it
        low = torch.where(negative, mid, low)
        high = torch.where(negative, high, mid)
    return 0.5 * (low + high)


def _pareto_residual(x1: Tensor, x2: Tensor) -> Tensor:
    c = torch.tanh(-0.5 * x2)
    q_w = (49 - x1.pow(2) + 0.1 * (x2 + 8).pow(2)) / 10 - 20
    return -0.5 * (1 - c.pow(2)) * q_w + 0.02 * c * (x2 + 8)


def pareto_set(points: int = 2001) -> Tensor:
    """The exact Pareto set sampled at ``points`` evenly spaced x1 in [-7, 7], shape (points, 2), float64."""
    if points < 2:
        raise ValueError("the Pareto set needs at least 2 sample points")
    x1 = torch.linspace(*PARETO_X1_RANGE, points, dtype=torch.float64)
    return torch.stack([x1, pareto_x2(x1)], dim=1)
