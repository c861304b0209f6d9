"""Finding methods by name, by explicit registration (the timm style) into the package's one registry class,
:class:`taskbalance.registration.Registry`.

A method is a class decorated with :func:`register_balancer`; only decorated classes are methods, so a helper
module (or a test's subclass) is never mistaken for one. On the first lookup (``available``, ``get``, ``create``)
the registry imports every module of :mod:`taskbalance.balancers` except the :data:`INFRASTRUCTURE` (importing a
module that registers nothing is harmless), then the entry points of the group ``taskbalance.balancers``
(:mod:`taskbalance.plugins`). A new method is one new module: nothing lists it. Importing happens on the first
lookup, not with the package, so ``import taskbalance.balancers`` stays cheap (several methods import scipy or
quadprog), and this module imports nothing above the ``base`` layer. An unknown name raises ``BalancerError``
naming the methods.

A user's plugin module registers its methods with the same decorator when it is imported (``--plugin``,
``plugins:`` in a config, or an entry point); see docs/plugins.md.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from taskbalance.balancers.base import Balancer, BalancerError
from taskbalance.plugins import load_entry_points
from taskbalance.registration import Registry

#: Modules of :mod:`taskbalance.balancers` that are not scanned for methods: the layers below the methods (the
#: engine and its parts), the helpers shared by methods and the step driver above them. Every other module of the
#: package is imported on first lookup.
INFRASTRUCTURE: frozenset[str] = frozenset({
    "types", "gramian", "capture", "checks", "graph", "gradients", "writeback", "engine", "base", "registry",
    "solvers", "helpers", "driver",
})

_REGISTRY: Registry[type[Balancer]] = Registry("balancer", BalancerError)
_loaded = False

B = TypeVar("B", bound=type[Balancer])


def register_balancer(cls: B) -> B:
    """Class decorator: make ``cls`` available under ``cls.name`` (a non-empty, unique name and a description).

    Re-registering the same class (same module and qualified name, e.g. after ``importlib.reload``) replaces it.
    """
    if not (isinstance(cls, type) and issubclass(cls, Balancer)):
        raise TypeError(f"register_balancer takes a Balancer subclass, got {cls!r}")
    if not cls.name or not cls.description:
        raise TypeError(f"{cls.__qualname__} needs a non-empty name and description to be registered")
    _REGISTRY.add(cls.name, cls)
    return cls


def method_modules() -> tuple[str, ...]:
    """The modules of :mod:`taskbalance.balancers` imported on the first lookup (all but :data:`INFRASTRUCTURE`)."""
    found = pkgutil.iter_modules([str(Path(__file__).parent)])
    return tuple(sorted(m.name for m in found if m.name not in INFRASTRUCTURE and not m.name.startswith("_")))


def _methods() -> Registry[type[Balancer]]:
    """The registry, after the package's method modules and the entry points were imported (once)."""
    global _loaded
    if not _loaded:
        for module in method_modules():
            importlib.import_module(f"{__package__}.{module}")
        load_entry_points()  # a broken one raises PluginError; the next lookup tries again
        _loaded = True
    return _REGISTRY


def available() -> dict[str, str]:
    """Method name -> one-line description, for every balancer."""
    return {name: cls.description for name, cls in sorted(_methods().items())}


def get(name: str) -> type[Balancer]:
    """The class of the method called ``name`` (case-insensitive, '-' and '_' alike)."""
    methods = _methods()
    key = name.lower().replace("_", "-")
    return methods.lookup(next((m for m in sorted(methods) if m.replace("_", "-") == key), name))


def describe_options(cls: type[Balancer]) -> str:
    """The options of a method, one per line, with defaults and descriptions."""
    lines = []
    for field_name, info in cls.Options.model_fields.items():
        default = "required" if info.is_required() else f"default {info.default!r}"
        lines.append(f"  {field_name} ({default}){': ' + info.description if info.description else ''}")
    return "\n".join(lines) or "  (no options)"


def create(name: str, **kwargs: Any) -> Balancer:
    """Build the balancer ``name``; see :class:`Balancer` for the common arguments and each method's ``Options``."""
    cls = get(name)
    try:
        return cls(**kwargs)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in error.errors())
        raise BalancerError(
            f"bad options for {cls.name}: {problems}\noptions of {cls.name}:\n{describe_options(cls)}"
        ) from None
    except TypeError as error:
        raise BalancerError(f"{cls.name}: {error}\noptions of {cls.name}:\n{describe_options(cls)}") from None
