"""taskbalance: multi-task optimization methods, gradient diagnostics and the dense-prediction imbalance study."""

from taskbalance import balancers

__all__ = ["balancers"]
__version__ = "0.1.0"
