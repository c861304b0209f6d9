"""Packaged YAML presets (``taskbalance/configs``) and config loading with ``base:`` inheritance.

Training presets are ``<name>.yaml``; study presets are ``study-<name>.yaml`` (see :mod:`taskbalance.study.plan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from taskbalance.training.config import (
    ConfigError,
    RunConfig,
    add_plugins,
    apply_overrides,
    deep_merge,
    validate_config,
)

STUDY_PREFIX = "study-"


def preset_dir() -> Path:
    """The folder holding the packaged presets."""
    return Path(str(resources.files("taskbalance") / "configs"))


def available_presets(study: bool = False) -> list[str]:
    """Names of the training presets (or, with ``study=True``, of the study presets)."""
    names = sorted(p.stem for p in preset_dir().glob("*.yaml"))
    if study:
        return [n[len(STUDY_PREFIX) :] for n in names if n.startswith(STUDY_PREFIX)]
    return [n for n in names if not n.startswith(STUDY_PREFIX)]


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (safe loader); errors name the file."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def resolve_path(name_or_path: str | Path, study: bool = False) -> Path:
    """A YAML file given as a path, or a packaged preset given by name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    stem = f"{STUDY_PREFIX}{name_or_path}" if study else str(name_or_path)
    candidate = preset_dir() / f"{stem}.yaml"
    if not candidate.is_file():
        choices = ", ".join(available_presets(study))
        raise ConfigError(f"no {'study ' if study else ''}preset named {name_or_path!r}; available: {choices}")
    return candidate


def load_raw(name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw training-config mapping, with its ``base:`` chain merged in (the base first)."""
    path = resolve_path(name_or_path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a preset name or a path, got {base!r}")
    base_path = Path(base)
    if not base_path.is_absolute() and (path.parent / base_path).suffix in (".yaml", ".yml"):
        base_path = path.parent / base_path
    return deep_merge(load_raw(base_path if base_path.suffix else base, _seen + (path.resolve(),)), data)


def load_config(name_or_path: str | Path, overrides: Sequence[str] = (), plugins: Sequence[str] = ()) -> RunConfig:
    """Load, merge, override and validate a training config; ``plugins`` (``--plugin``) join its ``plugins`` list
    and are imported before the method is checked."""
    return validate_config(add_plugins(apply_overrides(load_raw(name_or_path), overrides), plugins))
