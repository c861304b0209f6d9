"""Small helpers shared by several method modules (option checks, random orders), so that no method module imports
another. The numerical ones live in :mod:`taskbalance.balancers.solvers`.

Imports only :mod:`taskbalance.balancers.types`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from taskbalance.balancers.types import BalancerError


def check_task_keys(what: str, keys: Sequence[str], tasks: Sequence[str]) -> None:
    """Raise a :class:`BalancerError` naming the missing and the unknown tasks when ``keys`` ≠ ``tasks``."""
    missing = [t for t in tasks if t not in keys]
    unknown = [k for k in keys if k not in tasks]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing {missing}")
        if unknown:
            problems.append(f"unknown {unknown}")
        raise BalancerError(f"{what} must name exactly the tasks {list(tasks)}: {', '.join(problems)}")


def random_orders(num_tasks: int, generator: torch.Generator) -> list[list[int]]:
    """For every task i, the other tasks in a uniformly random order (one independent permutation per i)."""
    orders = []
    for i in range(num_tasks):
        others = [j for j in range(num_tasks) if j != i]
        permutation = torch.randperm(len(others), generator=generator).tolist()
        orders.append([others[k] for k in permutation])
    return orders
