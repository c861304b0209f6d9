"""The run configuration: a pydantic tree validated from YAML, with ``--set key=value`` overrides.

Every model forbids unknown keys, so a typo is an error that names the dotted key. Names and options are checked
against their registries when the config is loaded, before anything is built or written: task names and
``task_options`` (:mod:`taskbalance.tasks`), the dataset (:mod:`taskbalance.data`), the architecture and backbone
(:mod:`taskbalance.models`), and the method with its options, gradient source and head gradients (the method's own
``Options`` model, :mod:`taskbalance.balancers`). A YAML file may start from a packaged preset with
``base: <preset>`` (see :mod:`taskbalance.training.presets`); its own keys are merged on top.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # lr: .inf or .nan is refused


class DataConfig(_Strict):
    """Which dataset, where, and how it is batched."""

    name: str = "synthetic"
    root: Path | None = Field(None, description="dataset folder (None: the dataset's default / synthetic cache)")
    options: dict[str, Any] = Field(default_factory=dict, description="extra build_dataset options")
    train_options: dict[str, Any] = Field(
        default_factory=dict, description="options for the training split only (label noise, fewer scans/scenes)"
    )
    augment: bool = True
    batch_size: int = Field(6, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from taskbalance.data import available_datasets

        return _one_of(name, available_datasets(), "dataset")


class ModelConfig(_Strict):
    """Architecture and backbone, passed to ``taskbalance.models.build_model``."""

    arch: str = "vanilla"
    backbone: str = "resnet18"
    pretrained: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        from taskbalance.models import available_architectures

        return _one_of(arch, available_architectures(), "architecture")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, backbone: str, info: ValidationInfo) -> str:
        from taskbalance.models import compatible_backbones

        arch = info.data.get("arch")
        return backbone if arch is None else _one_of(backbone, compatible_backbones(arch), f"backbone for {arch}")


class MethodConfig(_Strict):
    """The balancer, by registry name, with its options."""

    name: str = "uniform"
    options: dict[str, Any] = Field(default_factory=dict)
    source: Literal["params", "last_layer", "features"] | None = None
    head_gradients: Literal["weighted", "raw"] | None = None

    @field_validator("name")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from taskbalance.balancers import get

        get(name)  # an unknown name is an error listing the methods
        return name

    @field_validator("options")
    @classmethod
    def _method_options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from taskbalance.balancers import get

        if "name" not in info.data:  # the name was refused already
            return options
        method = get(info.data["name"])
        try:
            method.Options.model_validate(options)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(options)'}: "
                f"{'unknown option' if e['type'] == 'extra_forbidden' else e['msg']}"
                for e in error.errors()
            )
            valid = ", ".join(method.Options.model_fields) or "none"
            raise ValueError(f"{problems} (options of {method.name}: {valid})") from None
        return options

    @model_validator(mode="after")
    def _source_fits_method(self) -> MethodConfig:
        from taskbalance.balancers import get

        method = get(self.name)
        if self.source is not None:
            if method.requires_for(method.Options.model_validate(self.options)) == "losses":
                raise ValueError(f"source: {method.name} weighs the losses only and takes no per-task gradients; "
                                 "leave source unset (diagnostics.source chooses where gradients are logged)")
            if self.source not in method.supported_sources:
                raise ValueError(
                    f"source: {method.name} supports {', '.join(method.supported_sources)}, not {self.source}"
                )
        return self


class OptimConfig(_Strict):
    """Optimizer, schedule and length (the paper's Table IX)."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, description="SGD only")
    schedule: Literal["poly", "constant", "cosine"] = "poly"
    poly_power: float = Field(0.9, gt=0)
    grad_clip: float = Field(0.0, ge=0, description="max global gradient norm; 0 disables")
    iterations: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    eval_every: int | None = Field(None, ge=1, description="evaluate every N steps (None: once per epoch)")
    checkpoint_every: int | None = Field(
        None, ge=1, description="save the last checkpoint every N steps (None: at each evaluation)"
    )

    @model_validator(mode="after")
    def _one_length(self) -> OptimConfig:
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError("set exactly one of optim.iterations and optim.epochs")
        return self


class DiagnosticsConfig(_Strict):
    """Gradient diagnostics (the paper's Section V-F): per-task norms, cosines, dot products, applied weights."""

    every: int = Field(0, ge=0, description="log diagnostics every N steps (0: off)")
    source: Literal["last_layer", "params", "features"] = "last_layer"


class EvaluationConfig(_Strict):
    """Final evaluation."""

    exact_edge: bool = Field(
        True, description="BSDS odsF for the final evaluation (the fast approximation during training)"
    )
    max_batches: int | None = Field(None, ge=1, description="evaluate on the first N batches only (smoke tests)")


class DistributedConfig(_Strict):
    """Multi-process training under torchrun (no effect in one process; see docs/distributed.md)."""

    sync_batchnorm: bool | Literal["auto"] = Field(
        "auto",
        description="BatchNorm statistics over all processes (auto: yes on GPUs; PyTorch's SyncBatchNorm needs GPUs)",
    )
    bucket_mb: float = Field(25.0, gt=0, description="DDP gradient bucket size in MiB (loss-weighting methods)")


class DistillConfig(_Strict):
    """URL (methods.md 3.14): align the student's features with frozen single-task teachers through adaptors.

    ``mode: distill`` adds the distances to the task losses (the URL method); ``mode: measure`` only measures them
    (detached student, the paper's Fig. 6 feature distance) and logs them with the diagnostics.
    """

    mode: Literal["distill", "measure"] = "distill"
    teachers: dict[str, Path] = Field(description="task -> run directory of its single-task model")
    weights: dict[str, float] = Field(default_factory=dict, description="λ_t per task (default 1)")
    adaptor_lr: float = Field(1e-2, gt=0)
    adaptor_weight_decay: float = Field(5e-4, ge=0)


class RunConfig(_Strict):
    """Everything one training run needs; written resolved into the run directory."""

    name: str = "run"
    plugins: tuple[str, ...] = Field(
        (), description="modules imported before validation: methods of one's own (docs/plugins.md)")  # before method
    tasks: tuple[str, ...]
    single_task: bool = False
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="bfloat16 autocast on GPU (ignored on CPU)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; part of what a run computes (float sums "
                                "split differently), so hashed; None: torch's default, stored resolved in config.yaml")
    stop_signals: tuple[str, ...] = Field(
        ("SIGTERM", "SIGUSR1"), description="signals that stop the run after its current step, with a checkpoint "
        "(preemption; see taskbalance.training.preemption)")
    log_every: int = Field(10, ge=1, description="write training losses and weights every N steps")
    task_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="task -> build_task options")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(iterations=1000))
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    distill: DistillConfig | None = None
    baseline: dict[str, dict[str, float]] | None = Field(
        None, description="single-task metrics per task: model selection then maximises Δm against them"
    )

    @field_validator("plugins")
    @classmethod
    def _import_plugins(cls, plugins: tuple[str, ...]) -> tuple[str, ...]:
        from taskbalance.plugins import import_plugins

        import_plugins(plugins)  # registers their methods before `method` is checked (fields validate in order)
        return plugins

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        from taskbalance.tasks import available_tasks

        names = available_tasks()
        unknown = [t for t in tasks if t not in names]
        if unknown or not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names from {', '.join(names)}, got {list(tasks)}")
        return tasks

    @field_validator("stop_signals")
    @classmethod
    def _catchable_signals(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from taskbalance.training.preemption import signal_number

        return tuple(signal_number(name).name for name in names)

    @field_validator("task_options")
    @classmethod
    def _known_task_options(cls, options: dict[str, dict[str, Any]], info: ValidationInfo) -> dict[str, dict[str, Any]]:
        from taskbalance.tasks import task_options

        tasks = info.data.get("tasks", ())
        for task, given in options.items():
            if task not in tasks:
                raise ValueError(f"{task}: not a task of this run ({', '.join(tasks)})")
            accepted = task_options(task)
            unknown = sorted(set(given) - set(accepted))
            if unknown:
                raise ValueError(f"{task}: unknown option(s) {', '.join(unknown)} (options of {task}: "
                                 f"{', '.join(accepted) or 'none'})")
        return options

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.single_task and len(self.tasks) != 1:
            raise ValueError("single_task runs have exactly one task")
        if self.distill is not None:
            extra = sorted(set(self.distill.teachers) - set(self.tasks))
            if extra:
                raise ValueError(f"distill.teachers names tasks that are not trained: {extra}")
        return self


def _one_of(name: str, names: Sequence[str], what: str) -> str:
    if name not in names:
        raise ValueError(f"{name!r} is not a known {what}; available: {', '.join(names)}")
    return name


def format_validation_error(error: ValidationError) -> str:
    """``dotted.key: problem`` for every error of a pydantic validation."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {message}" if key else message)
    return "; ".join(lines)


def validate_config(raw: Mapping[str, Any]) -> RunConfig:
    """Build a :class:`RunConfig` from a plain mapping; errors name the dotted key. A plugin that cannot be imported
    is the only error reported (an unknown method name would follow from it)."""
    from taskbalance.plugins import PluginError, import_plugins

    plugins = raw.get("plugins") or ()
    try:
        import_plugins(plugins if isinstance(plugins, (list, tuple)) else ())  # a wrong type: pydantic's error below
    except PluginError as error:
        raise ConfigError(f"invalid config: plugins: {error}") from None
    try:
        return RunConfig.model_validate(dict(raw))
    except ValidationError as error:
        raise ConfigError(f"invalid config: {format_validation_error(error)}") from None


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` merged into ``base`` (nested mappings merge, everything else replaces)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> (["optim", "lr"], 0.001); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value (e.g. optim.lr=1e-3)")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {key}: value {value!r} is not valid YAML ({error})") from None
    return key.strip().split("."), parsed


def apply_settings(raw: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``{"optim.lr": 1e-3}``) in a raw config mapping; mapping values merge into what is there."""
    result = dict(raw)
    for key, value in settings.items():
        update: Any = value
        for part in reversed(str(key).split(".")):
            update = {part: update}
        result = deep_merge(result, update)
    return result


def add_plugins(raw: Mapping[str, Any], plugins: Sequence[str]) -> dict[str, Any]:
    """``raw`` with ``plugins`` (``--plugin``) added to its ``plugins`` list, each module once."""
    from taskbalance.plugins import merge_plugins

    if not plugins:
        return dict(raw)
    given = raw.get("plugins") or []
    return {**raw, "plugins": merge_plugins([given] if isinstance(given, str) else given, plugins)}


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply command-line ``key=value`` overrides (values parsed as YAML) to a raw config mapping."""
    settings = {}
    for text in overrides:
        path, value = parse_override(text)
        settings[".".join(path)] = value
    return apply_settings(raw, settings)


def config_differences(a: RunConfig, b: RunConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""

    def flatten(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict) and value:
            return {k: v for key, sub in value.items() for k, v in flatten(sub, f"{prefix}{key}.").items()}
        return {prefix.rstrip("."): value}

    left, right = flatten(a.model_dump(mode="json"), ""), flatten(b.model_dump(mode="json"), "")
    return sorted(k for k in left.keys() | right.keys() if left.get(k) != right.get(k))


#: Keys that say how a run executes, not what it computes: left out of :func:`config_hash` (``plugins`` says where
#: the method's code is found; the method is ``method.name``). Not ``threads``: on CPU the thread count changes how
#: float sums are split, hence the numbers.
EXECUTION_KEYS: tuple[str, ...] = ("stop_signals", "plugins", "data.num_workers", "distributed.bucket_mb")
#: Keys that may differ between a stored and a planned study run: execution settings, and what the study derives
#: from its own runs or folder (the baseline, the teachers' paths).
DERIVED_KEYS: tuple[str, ...] = (*EXECUTION_KEYS, "baseline", "distill.teachers")


def config_hash(config: RunConfig, ignore: Sequence[str] = EXECUTION_KEYS) -> str:
    """sha256 (hex) of the resolved config without the dotted keys in ``ignore``: equal hashes, same training."""
    data = config.model_dump(mode="json")
    for key in ignore:
        *parents, last = key.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what the run directory stores)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
