"""Finding methods by name, by explicit registration (the timm style).

A method module decorates its class with :func:`register_balancer`; only decorated classes are methods, so a helper
module (or a test's subclass) is never mistaken for one. The method modules are listed in :data:`METHOD_MODULES`
and imported on the first lookup (``available``, ``get``, ``create``), by name, so importing the package stays
cheap (several methods import scipy or quadprog) and this module imports nothing above the ``base`` layer.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from pydantic import ValidationError

from taskbalance.balancers.base import Balancer, BalancerError

#: The modules of :mod:`taskbalance.balancers` that register methods (add a new method's module here).
METHOD_MODULES: tuple[str, ...] = (
    "aligned_mtl", "avgnorm", "cagrad", "db_mtl", "dwa", "fairgrad", "famo", "graddrop", "gradnorm", "gradvac",
    "imgrad", "imtl", "mgda", "nashmtl", "pcgrad", "rlw", "static", "stch", "uniform", "upgrad", "uw",
)  # fmt: skip

_REGISTRY: dict[str, type[Balancer]] = {}
_loaded = False

B = TypeVar("B", bound=type[Balancer])


def register_balancer(cls: B) -> B:
    """Class decorator: make ``cls`` available under ``cls.name`` (a non-empty, unique name and a description)."""
    if not (isinstance(cls, type) and issubclass(cls, Balancer)):
        raise TypeError(f"register_balancer takes a Balancer subclass, got {cls!r}")
    if not cls.name or not cls.description:
        raise TypeError(f"{cls.__qualname__} needs a non-empty name and description to be registered")
    registered = _REGISTRY.get(cls.name)
    if registered is not None and registered is not cls:
        raise TypeError(f"two balancers are named {cls.name!r}: {registered.__qualname__} and {cls.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _methods() -> dict[str, type[Balancer]]:
    global _loaded
    if not _loaded:
        for module in METHOD_MODULES:
            importlib.import_module(f"{__package__}.{module}")
        _loaded = True
    return dict(sorted(_REGISTRY.items()))


def available() -> dict[str, str]:
    """Method name -> one-line description, for every balancer."""
    return {name: cls.description for name, cls in _methods().items()}


def get(name: str) -> type[Balancer]:
    """The class of the method called ``name`` (case-insensitive, '-' and '_' alike)."""
    key = name.lower().replace("_", "-")
    methods = _methods()
    for method_name, cls in methods.items():
        if method_name.replace("_", "-") == key:
            return cls
    raise BalancerError(f"unknown balancer {name!r}; available: {', '.join(methods)}")


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
        raise BalancerError(f"bad options for {cls.name}: {problems}\noptions of {cls.name}:\n{describe_options(cls)}") from None
    except TypeError as error:
        raise BalancerError(f"{cls.name}: {error}\noptions of {cls.name}:\n{describe_options(cls)}") from None
