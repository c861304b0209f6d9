"""Methods of one's own: importing the modules that register them.

A plugin is an ordinary Python module that defines balancers with the public API (``Balancer``, ``Aggregation``,
``register_balancer`` from :mod:`taskbalance.balancers`); importing it registers them. It is imported by name

* from ``--plugin MODULE`` on ``taskbalance train``, ``study`` and ``toy``, and from ``plugins: [MODULE]`` in a run
  config or study preset (the list travels in every run's config, so study workers in other processes import the
  same modules, and a resumed run finds its method again);
* from the entry-point group ``taskbalance.balancers`` of every installed distribution, on the first lookup in the
  balancer registry (``[project.entry-points."taskbalance.balancers"] my_methods = "my_package.methods"``).

This module imports nothing from the package, so the registry and the config can both use it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType

#: The entry-point group whose modules are imported on the first registry lookup.
ENTRY_POINT_GROUP = "taskbalance.balancers"

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class PluginError(ValueError):
    """A plugin module that cannot be imported; the message is one line naming it and the reason."""


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def import_plugin(name: str) -> ModuleType:
    """Import the plugin module ``name`` (a dotted module name on ``sys.path``; importing it again is free).

    Raises:
        PluginError: ``name`` is not a module name, or importing it raised (its first line is kept).
    """
    if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
        raise PluginError(f"plugin {name!r} is not a module name (e.g. my_methods or my_package.methods; "
                          "put its folder on PYTHONPATH)")
    try:
        return importlib.import_module(name)
    except Exception as error:  # whatever the user's module raises: one line, not its traceback
        raise PluginError(f"plugin {name!r} could not be imported: {_reason(error)}") from None


def import_plugins(names: Iterable[str]) -> None:
    """Import every plugin module of ``names``, in order (see :func:`import_plugin`)."""
    for name in names:
        import_plugin(name)


def load_entry_points() -> list[str]:
    """Import the modules (or objects) of the ``taskbalance.balancers`` entry points; returns their names.

    Raises:
        PluginError: an entry point fails to load, named with its distribution.
    """
    loaded = []
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as error:  # a broken installed plugin: one line naming it
            where = f" of {point.dist.name}" if point.dist is not None else ""
            raise PluginError(f"entry point {point.name} = {point.value}{where} (group {ENTRY_POINT_GROUP}) could not "
                              f"be loaded: {_reason(error)}") from None
        loaded.append(point.name)
    return loaded


def merge_plugins(*lists: Iterable[str]) -> list[str]:
    """The plugin names of all ``lists``, each once, in order of first appearance."""
    return list(dict.fromkeys(name for names in lists for name in names))
