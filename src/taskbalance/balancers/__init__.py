"""Multi-task optimization methods behind one API: ``create(name, tasks=..., shared=...)`` and ``available()``."""

from taskbalance.balancers.base import (
    Aggregation,
    Balancer,
    BalancerError,
    GradientSource,
    NonFiniteLossError,
    StepInputs,
    StepResult,
)
from taskbalance.balancers.registry import available, create, describe_options, get

__all__ = [
    "Aggregation",
    "Balancer",
    "BalancerError",
    "GradientSource",
    "NonFiniteLossError",
    "StepInputs",
    "StepResult",
    "available",
    "create",
    "describe_options",
    "get",
]
