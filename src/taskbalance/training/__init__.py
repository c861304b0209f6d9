"""Training: one run. Configs and presets, the loop core (``loop``: the step through the step driver, the
epoch/iteration schedule, hook points) and its hooks (``hooks/``: logging, validation and checkpoint selection,
checkpointing and resume, URL distillation, progress, data-parallel set-up, the final test), the study's trainer
(``trainer``: a run from a config as the loop with its hooks), gradient diagnostics, checkpoints, run directories,
URL, data-parallel training and the worker-process utilities. The run logs' records are :mod:`taskbalance.records`.

It may import the packages below it (balancers, models, data, tasks, results, plugins, the top-level utilities);
never :mod:`taskbalance.study`, which builds on it (``tests/test_layering.py``)."""

from taskbalance.balancers.driver import TrainingDiverged
from taskbalance.training.config import ConfigError, RunConfig, validate_config
from taskbalance.training.diagnostics import diagnostic_record, format_summary, imbalance_summary
from taskbalance.training.presets import available_presets, load_config
from taskbalance.training.rundir import RunDir
from taskbalance.training.trainer import RunExistsError, Trainer, train

__all__ = [
    "ConfigError",
    "RunConfig",
    "RunDir",
    "RunExistsError",
    "Trainer",
    "TrainingDiverged",
    "available_presets",
    "diagnostic_record",
    "format_summary",
    "imbalance_summary",
    "load_config",
    "train",
    "validate_config",
]
