"""Multi-task optimization methods behind one API: ``create(name, tasks=..., shared=...)`` and ``available()``.

What lives here, in layers (each module imports only the ones before it; ``tests/test_balancers_registry.py``
checks every module's imports):

* ``types``: the data a step passes around, the errors, the ``StepMethod`` and ``GradientReducer`` protocols;
* the engine's parts: ``gramian`` (the Gramian, computed there only), ``capture`` (the last layer's forward hook),
  ``checks`` (losses, source, a method's output), ``graph`` (the head parameters), ``gradients`` (taking and keeping
  the per-task gradients), ``writeback`` (``.grad``); then ``engine``, the step sequence;
* ``base``: the :class:`Balancer` contract; ``registry``: ``@register_balancer``, ``available``, ``get``, ``create``;
* ``solvers`` and ``helpers``: what methods share (numerics; option checks and random orders);
* the method modules, one per method: each imports ``base``, ``registry``, ``types``, ``solvers``, ``helpers``, and
  never another method module;
* ``driver``: the step protocol every training loop uses, above ``base``.

The package imports nothing else from :mod:`taskbalance` but :mod:`taskbalance.plugins` and
:mod:`taskbalance.registration` (for the registry); importing it imports no method (the registry does, on the
first lookup).
"""

from taskbalance.balancers.base import Balancer, RandomizedBalancer
from taskbalance.balancers.registry import available, create, describe_options, get, register_balancer
from taskbalance.balancers.types import (
    Aggregation,
    BalancerError,
    GradientReducer,
    GradientSource,
    NonFiniteGradientError,
    NonFiniteLossError,
    StepInputs,
    StepResult,
)

__all__ = [
    "Aggregation",
    "Balancer",
    "BalancerError",
    "GradientReducer",
    "GradientSource",
    "NonFiniteGradientError",
    "NonFiniteLossError",
    "RandomizedBalancer",
    "StepInputs",
    "StepResult",
    "available",
    "create",
    "describe_options",
    "get",
    "register_balancer",
]
