"""Driving balancers on the toy problem: every (method, start) pair at once, Adam (lr 1e-3) on x, as the papers' toy
trainers do for one start at a time.

One iteration, for all M methods × S starts together (one row of x each):

1. one batched forward/backward gives the losses (MS×2) and the Jacobians (MS×2×2) at the current points;
2. each row's own balancer (method state is per row) first sees ``post_step(losses)`` (from the second iteration
   on: FAMO's logit update with f(x_{t+1}), done at the start of the next iteration as in the FAMO toy; a no-op for
   the other methods), then ``combine(J, losses)`` returns the direction;
3. the direction is clipped to the spec's ``max_norm`` (``clip_grad_norm_`` on x in the official trainers), written
   to ``x.grad``, and one Adam step moves every row. Adam is elementwise, so this equals M·S separate runs.

A method that fails (non-finite weights) is recorded in ``ToyRun.failures`` and its rows stay where it failed; the
other methods go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from taskbalance.balancers import Balancer, create
from taskbalance.toy.methods import MethodSpec, problem_defaults
from taskbalance.toy.problem import TASKS, ToyProblem

LEARNING_RATE = 1e-3
#: ``torch.nn.utils.clip_grad_norm_``'s epsilon.
_CLIP_EPS = 1e-6


@dataclass(frozen=True)
class ToyRun:
    """Trajectories of every method from every start.

    Shapes: ``points`` and ``losses`` (steps + 1)×M×S×2 (index 0: the starts), ``weights`` steps×M×S×2 (the
    method's task weights at each step). ``method_seconds[m]`` is the time spent inside method m's balancers,
    ``total_seconds`` the wall time of the whole run. ``failures`` maps a method index to what went wrong.
    """

    specs: tuple[MethodSpec, ...]
    points: Tensor
    losses: Tensor
    weights: Tensor
    method_seconds: tuple[float, ...]
    total_seconds: float
    failures: dict[int, str]

    @property
    def steps(self) -> int:
        """Number of optimizer steps taken."""
        return self.points.shape[0] - 1

    @property
    def starts(self) -> Tensor:
        """The initial points, S×2."""
        return self.points[0, 0]


def run_toy(
    problem: ToyProblem,
    specs: Sequence[MethodSpec],
    starts: Tensor,
    steps: int,
    on_step: Callable[[], None] | None = None,
    dtype: torch.dtype = torch.float64,
) -> ToyRun:
    """Run every method of ``specs`` from every row of ``starts`` (S×2) for ``steps`` Adam steps.

    Each (method, start) pair gets its own balancer, built with the method's problem defaults (see
    :func:`problem_defaults`) overridden by the spec's options. ``on_step`` is called after every step (progress).
    x, the losses, the gradients and Adam are in ``dtype`` (the presets use float32, as the papers' code did); the
    balancers solve in float64 as always; ``points`` are stored in float64 (exactly, whatever ``dtype``).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if starts.dim() != 2 or starts.shape[1] != 2 or starts.shape[0] == 0:
        raise ValueError(f"starts must be S×2 with S >= 1, got shape {tuple(starts.shape)}")
    n_methods, n_starts = len(specs), starts.shape[0]
    balancers = [
        [create(spec.name, tasks=TASKS, **(problem_defaults(spec.name, problem) | dict(spec.options))) for _ in range(n_starts)]
        for spec in specs
    ]
    max_norms = torch.tensor([math.inf if s.max_norm is None else s.max_norm for s in specs], dtype=dtype)
    max_norms = max_norms.repeat_interleave(n_starts).unsqueeze(1)
    x = starts.detach().to(dtype).repeat(n_methods, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=LEARNING_RATE)
    points = torch.empty(steps + 1, *x.shape, dtype=torch.float64)
    weights = torch.zeros(steps, *x.shape, dtype=torch.float64)
    points[0] = x.detach()
    method_seconds = [0.0] * n_methods
    failures: dict[int, str] = {}
    began = time.perf_counter()
    for step in range(steps):
        losses, jacobians = problem.losses_and_jacobians(x)
        directions = torch.zeros_like(losses)
        for m, spec in enumerate(specs):
            if m in failures:
                continue
            rows = slice(m * n_starts, (m + 1) * n_starts)
            clock = time.perf_counter()
            error = _combine_rows(balancers[m], jacobians[rows], losses[rows], step, directions[rows], weights[step, rows])
            method_seconds[m] += time.perf_counter() - clock
            if error is not None:
                failures[m] = f"{spec.label}: {error}"
        norms = directions.norm(dim=1, keepdim=True)
        optimizer.zero_grad(set_to_none=True)
        x.grad = directions * (max_norms / (norms + _CLIP_EPS)).clamp(max=1.0)
        optimizer.step()
        with torch.no_grad():
            for m in failures:
                x[m * n_starts : (m + 1) * n_starts] = points[step, m * n_starts : (m + 1) * n_starts]
        points[step + 1] = x.detach()
        if on_step is not None:
            on_step()
    total_seconds = time.perf_counter() - began
    shape = (steps + 1, n_methods, n_starts, 2)
    return ToyRun(
        specs=tuple(specs),
        points=points.reshape(shape),
        losses=problem.losses(points.reshape(-1, 2)).reshape(shape),
        weights=weights.reshape(steps, n_methods, n_starts, 2),
        method_seconds=tuple(method_seconds),
        total_seconds=total_seconds,
        failures=failures,
    )


def _combine_rows(
    balancers: Sequence[Balancer], jacobians: Tensor, losses: Tensor, step: int, directions: Tensor, weights: Tensor
) -> str | None:
    """Fill one method's directions and weights in place; return an error message if the method failed."""
    for start, balancer in enumerate(balancers):
        try:
            if step > 0:
                balancer.post_step(losses[start])
            direction, start_weights = balancer.combine(jacobians[start], losses[start])
        except ArithmeticError as error:  # non-finite losses or weights
            return f"start {start}, step {step}: {error}"
        directions[start] = direction.double()
        weights[start] = start_weights
    return None
