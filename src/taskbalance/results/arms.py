"""Arms: the runs of one configuration over several seeds, grouped from ``results.json`` files.

An arm is a method plus the config values that define it, excluding the seed. From a run's ``results.json`` those
are its method, kind, tasks and the provenance in ``meta`` listed in :data:`ARM_META_KEYS` (method options,
architecture, backbone, dataset and its options, training length); the seed is ``meta["seed"]``. ``meta`` is read
through :class:`~taskbalance.results.meta.RunMeta`, the model the trainer writes it with.
Rows are labelled by the method plus the config values that differ between the compared arms (issue: three
``train quick`` runs must not all read "quick").
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskbalance.results.baseline import BASELINE_NAME, compose_baseline
from taskbalance.results.errors import ResultsError
from taskbalance.results.meta import RunMeta
from taskbalance.results.schema import RunResult

#: The ``meta`` entries of a run that define its arm (with method, kind and tasks). ``arm_sha256``, when a run records
#: it, is the hash of its whole resolved config without the seed (and run name, selection baseline, teachers' paths).
ARM_META_KEYS: tuple[str, ...] = (
    "method_options",
    "arch",
    "backbone",
    "dataset",
    "dataset_info",
    "steps",
    "arm_sha256",
)
#: Config values that identify an arm but say nothing to a reader: shown only to tell otherwise equal labels apart.
_HASH_KEY = "arm_sha256"
#: Entries of ``meta["dataset_info"]`` that vary between replicates, not between arms.
_REPLICATE_KEYS = frozenset({"seed", "split", "root"})
#: Config values that make runs incomparable in one table: (label, dotted key).
COMPARABILITY_KEYS: tuple[tuple[str, str], ...] = (
    ("training lengths", "steps"), ("datasets", "dataset"), ("resolutions", "dataset_info.resolution"),
)

Seed = Hashable


@dataclass(frozen=True)
class Arm:
    """The runs of one arm, one per seed (seed None: a run that does not record its seed)."""

    name: str
    runs: Mapping[Seed, RunResult]

    @property
    def seeds(self) -> tuple[Seed, ...]:
        """The arm's seeds, sorted (None last)."""
        return tuple(sorted(self.runs, key=lambda s: (s is None, s if isinstance(s, int) else 0, str(s))))

    @property
    def n(self) -> int:
        """Number of seeds."""
        return len(self.runs)


def seed_of(run: RunResult) -> Seed:
    """The seed a run recorded in ``meta["seed"]`` (None when it did not)."""
    return RunMeta.of(run).seed


def single_arm(run: RunResult) -> Arm:
    """One run as an arm of one seed, named after the run."""
    return Arm(run.name, {seed_of(run): run})


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def arm_config(run: RunResult) -> dict[str, Any]:
    """The dotted config values that define the run's arm (``method``, ``method_options.gamma``, ``steps``...)."""
    meta = RunMeta.of(run).recorded(ARM_META_KEYS)
    if isinstance(meta.get("dataset_info"), Mapping):
        meta["dataset_info"] = {k: v for k, v in meta["dataset_info"].items() if k not in _REPLICATE_KEYS}
    return {"method": run.method, "kind": run.kind, "tasks": ",".join(run.tasks), **_flatten(meta)}


def _key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _labels(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Method plus the values that differ: method options among arms of the same method, the rest among all; arms
    that still read the same get the start of their config hash."""
    labels = []
    for config in configs:
        same_method = [c for c in configs if c["method"] == config["method"]]
        parts = []
        for key, value in config.items():
            if key in ("method", _HASH_KEY):
                continue
            among = same_method if key.startswith("method_options.") else configs
            if any(c.get(key) != value for c in among):
                parts.append(f"{key.removeprefix('method_options.')}={_text(value)}")
        labels.append(f"{config['method']} ({', '.join(parts)})" if parts else str(config["method"]))
    return [f"{label} [config {str(config.get(_HASH_KEY))[:8]}]" if labels.count(label) > 1 else label
            for label, config in zip(labels, configs)]


def group_runs(runs: Sequence[RunResult]) -> list[Arm]:
    """Group runs into arms (same :func:`arm_config`, different seeds), in order of first appearance.

    Raises:
        ResultsError: two runs of one arm have the same seed (or both record none).
    """
    configs: dict[str, dict[str, Any]] = {}
    members: dict[str, dict[Seed, RunResult]] = {}
    for run in runs:
        config = arm_config(run)
        key = _key(config)
        configs.setdefault(key, config)
        arm = members.setdefault(key, {})
        seed = seed_of(run)
        if seed in arm:
            what = f"seed {seed}" if seed is not None else "no recorded seed (meta.seed)"
            raise ResultsError(
                f"runs {arm[seed].name!r} and {run.name!r} have the same config and {what}; pass each run once"
            )
        arm[seed] = run
    labels = _labels(list(configs.values()))
    return [Arm(label, members[key]) for label, key in zip(labels, configs)]


def baseline_arm(stl_runs: Sequence[RunResult], name: str = BASELINE_NAME) -> Arm:
    """The single-task baseline per seed: each seed's STL runs composed into one result (see
    :func:`~taskbalance.results.compose_baseline`)."""
    if not stl_runs:
        raise ResultsError("the single-task baseline needs at least one STL run")
    by_seed: dict[Seed, list[RunResult]] = {}
    for run in stl_runs:
        by_seed.setdefault(seed_of(run), []).append(run)
    return Arm(name, {seed: compose_baseline(group, name) for seed, group in by_seed.items()})


def comparability_warnings(runs: Sequence[RunResult]) -> list[str]:
    """One line per config value that differs between runs put in one table (training length, dataset, resolution)."""
    warnings = []
    recorded = [(run, _flatten(RunMeta.of(run).recorded(ARM_META_KEYS))) for run in runs]
    for what, key in COMPARABILITY_KEYS:
        values: dict[str, list[str]] = {}
        for run, flat in recorded:
            value = flat.get(key)
            if value is not None:
                values.setdefault(_text(value), []).append(run.name)
        if len(values) > 1:
            listed = "; ".join(f"{value}: {', '.join(dict.fromkeys(names))}" for value, names in values.items())
            warnings.append(f"runs with different {what} ({key}) are compared in one table: {listed}")
    return warnings
