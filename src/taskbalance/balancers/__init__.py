"""Multi-task optimization methods behind one API: ``create(name, tasks=..., shared=...)`` and ``available()``."""

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
