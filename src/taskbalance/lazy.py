"""Lazy re-exports for package ``__init__`` modules (PEP 562), so that importing a light submodule (a table of
names, a CLI module) does not import torch, torchvision and timm through its package.

```python
__getattr__, __dir__, __all__ = lazy_exports(__name__, {"DataError": "base", "build_dataset": "registry"})
```

``from package import DataError`` then imports ``package.base`` on first use; a name that maps to itself is a
submodule (``{"balancers": "balancers"}``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``, whose ``exports`` map a public name to the
    submodule (relative to ``package``) that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{exports[name]}")
        return module if exports[name] == name else getattr(module, name)

    names = sorted(exports)

    def __dir__() -> list[str]:
        return names

    return __getattr__, __dir__, names
