"""Never reuse a run trained under another config: compare a run directory's stored config with the planned one.

A study run whose ``config.yaml`` differs from what the study would train now (other than in execution settings,
the single-task ``baseline`` read from the study's own runs, and the teachers' absolute paths) is *stale*. The
study reports it and moves it aside to ``<run>.stale-<hash>`` (``hash``: the first 12 hex digits of the stored
config's :func:`~taskbalance.training.config.config_hash`), then trains the run anew. Nothing is deleted: moving
the folder back restores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from taskbalance.training.config import DERIVED_KEYS, ConfigError, RunConfig, config_differences, config_hash
from taskbalance.training.presets import load_config
from taskbalance.training.rundir import RunDir


def changed_keys(differences: Sequence[str], shown: int = 6) -> str:
    """The first ``shown`` changed config keys, comma-separated, `` ...`` when there are more."""
    return ", ".join(differences[:shown]) + (" ..." if len(differences) > shown else "")


@dataclass(frozen=True)
class StaleRun:
    """A run directory set aside: where it was, where it went, and the keys that differed."""

    name: str
    moved_to: Path
    differences: tuple[str, ...]

    def describe(self) -> str:
        return (f"{self.name}: trained under another config ({changed_keys(self.differences)}); moved aside to "
                f"{self.moved_to.name}, training it anew")


def differing_keys(stored: RunConfig, planned: RunConfig) -> list[str]:
    """Dotted keys in which a stored run's config differs from the planned one, derived keys excluded."""
    return [key for key in config_differences(stored, planned)
            if not any(key == k or key.startswith(f"{k}.") for k in DERIVED_KEYS)]


def stale_differences(run_dir: RunDir, planned: RunConfig) -> tuple[list[str], str]:
    """The keys in which ``run_dir``'s stored config differs from ``planned`` (empty when current or when there is
    no run), and the stored config's short hash (``unreadable`` when config.yaml cannot be read)."""
    if not run_dir.config.is_file():
        return [], ""
    try:
        stored = load_config(run_dir.config)
    except ConfigError as error:
        return [f"unreadable config.yaml: {error}"], "unreadable"
    return differing_keys(stored, planned), config_hash(stored)[:12]


def set_aside_if_stale(name: str, run_dir: RunDir, planned: RunConfig) -> StaleRun | None:
    """Move ``run_dir`` aside when its stored config differs from ``planned`` (or cannot be read); None when it is
    current or does not exist."""
    differences, digest = stale_differences(run_dir, planned)
    if not differences:
        return None
    target = run_dir.root.with_name(f"{run_dir.root.name}.stale-{digest}")
    index = 1
    while target.exists():
        index += 1
        target = run_dir.root.with_name(f"{run_dir.root.name}.stale-{digest}-{index}")
    run_dir.root.rename(target)
    return StaleRun(name, target, tuple(differences))


def plan_status(run_dir: RunDir, planned: RunConfig) -> str:
    """What running the study would do with this run: ``finished``, ``to do``, or, for a run trained under another
    config, ``stale: will retrain (changed: <keys>)``."""
    differences, _ = stale_differences(run_dir, planned)
    if differences:
        return f"stale: will retrain (changed: {changed_keys(differences)})"
    return "finished" if run_dir.is_finished() else "to do"
