"""Explicit registration, the one registry style of the package (as timm does): an object becomes available by name
only when its module registers it, so a helper in a package is never mistaken for a model, dataset or task.

The balancers registry (:mod:`taskbalance.balancers.registry`) follows the same rules with its own class decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Name → object, filled by :meth:`register` (decorator) or :meth:`add`; a duplicate name is an error."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name``; returns it."""
        if not name:
            raise TypeError(f"a {self.kind} needs a non-empty name")
        if name in self:
            raise TypeError(f"two {self.kind}s are named {name!r}")
        self[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` registers the decorated object."""

        def decorate(obj: T) -> T:
            return self.add(name, obj)

        return decorate
