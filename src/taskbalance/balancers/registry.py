"""Finding methods by name: every module of this package that defines a :class:`Balancer` subclass with a
``name`` is a method. ``available()`` lists them, ``create()`` builds one with validated options."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from pydantic import ValidationError

from taskbalance.balancers.base import Balancer, BalancerError

_INFRASTRUCTURE = {"base", "engine", "registry", "solvers"}


@cache
def _methods() -> dict[str, type[Balancer]]:
    import taskbalance.balancers as package

    found: dict[str, type[Balancer]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _INFRASTRUCTURE or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Balancer) and obj.name and obj.__module__ == module.__name__:
                if obj.name in found:
                    raise RuntimeError(f"two balancers are named {obj.name!r}")
                found[obj.name] = obj
    return dict(sorted(found.items()))


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
