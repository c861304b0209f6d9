"""Explicit registration, the one registry style of the package (as timm does): an object becomes available by name
only when its module registers it, so a helper in a package is never mistaken for a balancer, model, backbone,
dataset or task.

Every registry is a :class:`Registry`: balancers (``taskbalance.balancers.registry``, whose ``@register_balancer``
adds a class under its ``name``), architectures and backbones (``taskbalance.models``), datasets and tasks.
:meth:`Registry.lookup` is the one way to resolve a user's name: an unknown one raises the registry's own error
(``BalancerError``, ``ModelError``, ...) naming what exists.

This module imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def _definition(obj: object) -> tuple[str, str] | None:
    """``(module, qualified name)`` of a class or function, None for other objects."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return (module, qualname) if isinstance(module, str) and isinstance(qualname, str) else None


class Registry(dict[str, T], Generic[T]):
    """Name → object, filled by :meth:`register` (decorator) or :meth:`add`; a duplicate name is an error.

    Args:
        kind: what the registry holds, for messages ("balancer", "backbone", ...).
        error: the exception :meth:`lookup` raises for an unknown name (the package's error for that kind).
    """

    def __init__(self, kind: str, error: type[Exception] = LookupError) -> None:
        super().__init__()
        self.kind = kind
        self.error = error

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name``; returns it.

        The same class or function defined again (same module and qualified name: its module re-imported or
        reloaded) replaces the old definition; any other object under a taken name is a ``TypeError``.
        """
        if not name:
            raise TypeError(f"a {self.kind} needs a non-empty name")
        if name in self:
            old, new = _definition(self[name]), _definition(obj)
            if old is None or old != new:
                where = f": {'.'.join(old)} and {'.'.join(new)}" if old is not None and new is not None else ""
                raise TypeError(f"two {self.kind}s are named {name!r}{where}")
        self[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name")`` registers the decorated object."""

        def decorate(obj: T) -> T:
            return self.add(name, obj)

        return decorate

    def copy(self) -> Registry[T]:
        """A registry of the same kind and error holding the same entries (e.g. to restore after a test)."""
        duplicate: Registry[T] = Registry(self.kind, self.error)
        duplicate.update(self)
        return duplicate

    def lookup(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises :attr:`error` listing the registered names."""
        if name not in self:
            raise self.error(f"unknown {self.kind} {name!r}; available: {', '.join(self)}")
        return self[name]
