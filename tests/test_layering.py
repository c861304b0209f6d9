"""The study builds on training, never the reverse: no module of ``taskbalance.training`` imports
``taskbalance.study``, checked statically with ``ast`` (every import counts: module level, deferred into a function,
or under ``if TYPE_CHECKING:``; relative imports are resolved)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "taskbalance"


def imported_modules(source: str, package: str) -> set[str]:
    """The absolute module names the import statements of ``source`` (a module of ``package``) name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def violations(lower: str, upper: str) -> list[str]:
    """``module -> imported`` for every import of package ``upper`` by a module of package ``lower``."""
    found = []
    for path in sorted((PACKAGE.parent / lower.replace(".", "/")).rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        package = package.removesuffix(".__init__")
        for name in sorted(imported_modules(path.read_text(encoding="utf-8"), package)):
            if name == upper or name.startswith(f"{upper}."):
                found.append(f"{module} -> {name}")
    return found


def test_the_detector_sees_deferred_relative_and_type_checking_imports():
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from taskbalance.study.plan import PlannedRun\n"
              "def later():\n    from ..study import schedule\n    import taskbalance.study.report\n")
    names = imported_modules(source, "taskbalance.training")
    assert {"taskbalance.study.plan", "taskbalance.study.schedule", "taskbalance.study.report"} <= names
    assert imported_modules("from . import loop\n", "taskbalance.training") == {"taskbalance.training",
                                                                               "taskbalance.training.loop"}


def test_the_study_package_sits_beside_training_not_inside_it():
    assert (PACKAGE / "study" / "__init__.py").is_file()
    moved = ("study", "schedule", "executors", "staleness", "report", "report_checks", "curves", "cluster", "run_task")
    assert not [name for name in moved if (PACKAGE / "training" / f"{name}.py").exists()]


def test_training_never_imports_the_study():
    assert violations("taskbalance.study", "taskbalance.training"), "the check must see the study import training"
    found = violations("taskbalance.training", "taskbalance.study")
    assert not found, "training imports the study:\n" + "\n".join(found)


#: What each package may import of the others, as its ``__init__`` docstring says (``cli`` sits on top).
ALLOWED = {
    "results": {"atomic", "conventions", "records"},
    "models": {"registration"},
    "tasks": {"conventions", "registration", "results"},
    "toy": {"atomic", "balancers", "lazy", "results"},
    "plots": {"atomic", "conventions", "records", "results"},
    "doctor": {"atomic", "balancers", "conventions", "plots", "records", "results"},
    "data": {"atomic", "conventions", "lazy", "registration"},
}


def imported_packages(package: str) -> set[str]:
    """The other top-level parts of ``taskbalance`` that the modules of ``taskbalance.<package>`` import."""
    found = set()
    for path in sorted((PACKAGE / package).rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        owner = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for name in imported_modules(path.read_text(encoding="utf-8"), owner):
            parts = name.split(".")
            if parts[0] == "taskbalance" and len(parts) > 1 and parts[1] != package:
                found.add(parts[1])
    return found


def test_each_package_imports_only_what_its_docstring_allows():
    assert "balancers" in imported_packages("toy"), "the check must see the toy import the balancers"
    extra = {package: sorted(imported_packages(package) - allowed) for package, allowed in ALLOWED.items()}
    assert not {package: names for package, names in extra.items() if names}
    for package, allowed in ALLOWED.items():
        docstring = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8")))
        assert docstring is not None and "May import" in docstring
        assert all(f"``{name}``" in docstring for name in allowed), package
