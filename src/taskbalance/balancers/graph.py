"""Walking the autograd graph: the leaves a step's losses reach, and among them the task-specific (head) parameters.

Imports only :mod:`taskbalance.balancers.types`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.autograd.graph import Node

from taskbalance.balancers.types import BalancerError, StepMethod


def reachable_leaves(roots: Sequence[Tensor], stop_at: Sequence[Tensor] = ()) -> list[Tensor]:
    """Leaf tensors requiring grad that the roots depend on, without walking through ``stop_at`` tensors."""
    stop = {t.grad_fn for t in stop_at if t.grad_fn is not None}
    seen: set[object] = set()
    leaves: dict[int, Tensor] = {}
    stack: list[Node | None] = [r.grad_fn for r in roots if r.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen or node in stop:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves[id(variable)] = variable
        stack.extend(next_node for next_node, _ in node.next_functions)
    return list(leaves.values())


def head_parameters(
    method: StepMethod, losses: Sequence[Tensor], stop_at: Sequence[Tensor], strict: bool = True
) -> list[Tensor] | None:
    """The leaves the losses reach that are not shared (through ``stop_at`` only, when given). A shared parameter
    reached by a path that bypasses ``stop_at`` is an error, or, unless ``strict``, gives None."""
    shared_ids = {id(p) for p in method.shared_params}
    leaves = reachable_leaves(losses, stop_at=stop_at)
    if stop_at:
        leaked = [p for p in leaves if id(p) in shared_ids]
        if leaked and not strict:
            return None
        if leaked:
            raise BalancerError(
                f"{method.name}: the losses reach {len(leaked)} shared parameter(s) by a path that bypasses the "
                "features passed to backward(); pass every shared tensor the heads read (a list is fine)"
            )
    return [p for p in leaves if id(p) not in shared_ids]
