"""taskbalance: multi-task optimization methods, gradient diagnostics and the dense-prediction imbalance study."""

from taskbalance.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {"balancers": "balancers"})
__version__ = "0.1.0"
