"""Small helpers shared by several method modules (option checks, random orders), so that no method module imports
another. The numerical ones live in :mod:`taskbalance.balancers.solvers`.

Imports only :mod:`taskbalance.balancers.types` and :mod:`taskbalance.balancers.checks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from taskbalance.balancers.checks import task_key_problems
from taskbalance.balancers.types import BalancerError


def check_task_keys(what: str, keys: Sequence[str], tasks: Sequence[str]) -> None:
    """Raise a :class:`BalancerError` naming the missing and the unknown tasks when ``keys`` ≠ ``tasks``."""
    problems = task_key_problems(keys, tasks)
    if problems:
        raise BalancerError(f"{what} must name exactly the tasks {list(tasks)}: {problems}")


def random_orders(num_tasks: int, generator: torch.Generator) -> list[list[int]]:
    """For every task i, the other tasks in a uniformly random order (one independent permutation per i)."""
    orders = []
    for i in range(num_tasks):
        others = [j for j in range(num_tasks) if j != i]
        permutation = torch.randperm(len(others), generator=generator).tolist()
        orders.append([others[k] for k in permutation])
    return orders
