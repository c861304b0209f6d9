"""Driving balancers on the toy problem: every (method, start) pair at once, Adam (lr 1e-3) on x, as the papers' toy
trainers do for one start at a time.

One iteration, for all M methods × S starts together (one row of x each), is a step of
:class:`~taskbalance.balancers.driver.StepDriver` with this module's backward strategy over ``combine``:

1. one batched forward/backward gives the losses (MS×2) and the Jacobians (MS×2×2) at the current points;
2. each row's own balancer (method state is per row) turns its Jacobian into a direction with ``combine(J, losses)``;
3. the direction is clipped to the spec's ``max_norm`` (``clip_grad_norm_`` on x in the official trainers), written
   to ``x.grad``, and one Adam step moves every row. Adam is elementwise, so this equals M·S separate runs;
4. when a method needs the losses after the update (FAMO, as in the FAMO toy), they are evaluated at the new points
   and each row's balancer gets ``post_step(losses)``.

A method that fails (non-finite weights) is recorded in ``ToyRun.failures`` and its rows stay where it failed; the
other methods go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from taskbalance.balancers import Balancer, GradientSource, create
from taskbalance.balancers.driver import Forward, StepDriver
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
    x = starts.detach().to(dtype).repeat(n_methods, 1).requires_grad_(True)
    methods = _MethodRows(problem, specs, n_starts, x)
    driver = StepDriver(methods, torch.optim.Adam([x], lr=LEARNING_RATE), methods.backward)
    points = torch.empty(steps + 1, *x.shape, dtype=torch.float64)
    weights = torch.zeros(steps, *x.shape, dtype=torch.float64)
    points[0] = x.detach()
    began = time.perf_counter()
    for step in range(steps):
        methods.step = step
        weights[step] = driver.step(partial(_forward, problem, x))
        with torch.no_grad():
            for m, anchor in methods.anchors.items():
                x[methods.rows(m)] = anchor
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
        method_seconds=tuple(methods.seconds),
        total_seconds=total_seconds,
        failures=methods.failures,
    )


@dataclass(frozen=True)
class _ToyForward(Forward):
    """The toy's forward pass: ``losses`` are per-task columns over the rows of x, with their Jacobians (rows×2×2)."""

    jacobians: Tensor | None = None


def _forward(problem: ToyProblem, x: Tensor) -> _ToyForward:
    losses, jacobians = problem.losses_and_jacobians(x)
    return _ToyForward({task: losses[:, i] for i, task in enumerate(TASKS)}, jacobians=jacobians)


class _MethodRows:
    """Every method's balancers, one per start (row of x), behind the hooks that :class:`StepDriver` calls.

    ``backward`` combines each row's Jacobian into its direction, clips it to the spec's ``max_norm`` and writes
    ``x.grad``; ``post_step`` hands each row its losses after the update. A method that fails (non-finite losses or
    weights) is recorded in ``failures`` and its rows are held at ``anchors``, where they were when it failed.
    """

    def __init__(self, problem: ToyProblem, specs: Sequence[MethodSpec], n_starts: int, x: Tensor) -> None:
        self.specs, self.n_starts, self.x = tuple(specs), n_starts, x
        self.balancers = [
            [
                create(spec.name, tasks=TASKS, **(problem_defaults(spec.name, problem) | dict(spec.options)))
                for _ in range(n_starts)
            ]
            for spec in specs
        ]
        max_norms = torch.tensor([math.inf if s.max_norm is None else s.max_norm for s in specs], dtype=x.dtype)
        self.max_norms = max_norms.repeat_interleave(n_starts).unsqueeze(1)
        self.needs_post_step_losses = any(b.needs_post_step_losses for rows in self.balancers for b in rows)
        self.seconds = [0.0] * len(specs)
        self.failures: dict[int, str] = {}
        self.anchors: dict[int, Tensor] = {}
        self.step = 0

    def rows(self, method: int) -> slice:
        """The rows of x that method ``method`` moves."""
        return slice(method * self.n_starts, (method + 1) * self.n_starts)

    def _working(self) -> Iterator[tuple[int, list[Balancer]]]:
        return ((m, rows) for m, rows in enumerate(self.balancers) if m not in self.failures)

    def _fail(self, method: int, start: int, step: int, error: ArithmeticError) -> None:
        self.failures[method] = f"{self.specs[method].label}: start {start}, step {step}: {error}"
        self.anchors[method] = self.x.detach()[self.rows(method)].clone()

    def backward(self, forward: Forward, diagnose: GradientSource | None = None) -> Tensor:
        """Write every row's clipped direction into ``x.grad``; returns the task weights of every row (rows×2)."""
        assert isinstance(forward, _ToyForward) and forward.jacobians is not None
        losses = torch.stack([forward.losses[task] for task in TASKS], dim=1)
        directions, weights = torch.zeros_like(losses), torch.zeros(losses.shape, dtype=torch.float64)
        for m, balancers in self._working():
            clock = time.perf_counter()
            for start, balancer in enumerate(balancers):
                row = m * self.n_starts + start
                try:
                    direction, weights[row] = balancer.combine(forward.jacobians[row], losses[row])
                except ArithmeticError as error:  # non-finite losses or weights
                    self._fail(m, start, self.step, error)
                    break
                directions[row] = direction.double()
            self.seconds[m] += time.perf_counter() - clock
        norms = directions.norm(dim=1, keepdim=True)
        self.x.grad = directions * (self.max_norms / (norms + _CLIP_EPS)).clamp(max=1.0)
        return weights

    def post_step(self, losses: Mapping[str, Tensor]) -> None:
        """Give each row's balancer its losses at the new point (FAMO's logit update; a no-op for most methods)."""
        vector = torch.stack([losses[task] for task in TASKS], dim=1)
        for m, balancers in list(self._working()):
            clock = time.perf_counter()
            for start, balancer in enumerate(balancers):
                try:
                    balancer.post_step(vector[m * self.n_starts + start])
                except ArithmeticError as error:
                    self._fail(m, start, self.step + 1, error)
                    break
            self.seconds[m] += time.perf_counter() - clock

    def epoch_end(self) -> None:
        """The toy has no epochs; forwarded for completeness of the hooks."""
        for rows in self.balancers:
            for balancer in rows:
                balancer.epoch_end()
