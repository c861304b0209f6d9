"""No import circle anywhere in ``src/taskbalance``, checked statically with ``ast``.

What counts as "module A imports module B":

* every ``import`` / ``from ... import`` statement in A, at module level **and inside functions**: an import
  deferred into a function still makes A depend on B (it only delays the failure); the circles this test was
  written for (balancers base ↔ engine, training report ↔ study, plots ↔ training) were all deferred imports;
* except those under ``if TYPE_CHECKING:``, which never run;
* importing ``a.b.c`` also runs the ``__init__`` of its packages ``a.b`` (so A depends on them too), except the
  packages A itself lives in, which are initialised before A anyway;
* ``from package import name`` depends on ``package.name`` when that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _packages(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


class _Imports(ast.NodeVisitor):
    """The absolute names a module's import statements refer to (TYPE_CHECKING blocks skipped)."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            base = ".".join(parts + ([node.module] if node.module else []))
        self.names.add(base)
        self.names.update(f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it depends on (see the module docstring)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        visitor = _Imports(name if path.name == "__init__.py" else name.rpartition(".")[0])
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        targets = {t for t in visitor.names if t in modules}
        targets |= {p for t in targets for p in _packages(t) if p in modules}
        graph[name] = targets - {name} - _packages(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (a → … → a) through every strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle(graph, group) for group in groups]


def _circle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth-first inside the group, back to the start
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                frontier.append(nxt)
    raise AssertionError(f"no circle through {start}")


def test_the_detector_finds_a_circle_and_ignores_what_is_not_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_deferred_and_package_imports_count_type_checking_ones_do_not():
    visitor = _Imports("pkg.sub")
    visitor.visit(ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.other import Hidden\n"
        "def later():\n    from . import sibling\n    from ..top import name\n"
    ))
    assert visitor.names == {"typing", "typing.TYPE_CHECKING", "pkg.sub", "pkg.sub.sibling", "pkg.top", "pkg.top.name"}


def test_no_import_circle_in_the_package():
    graph = import_graph()
    assert "taskbalance.balancers.driver" in graph and "taskbalance.training.loop" in graph
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(" → ".join(circle) for circle in found)
