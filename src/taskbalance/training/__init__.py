"""Training: one run. Configs and presets, the resumable loop with gradient diagnostics, checkpoints, run
directories, URL, data-parallel training and the worker-process utilities.

It may import the packages below it (balancers, models, data, tasks, results, plugins, the top-level utilities);
never :mod:`taskbalance.study`, which builds on it (``tests/test_layering.py``)."""

from taskbalance.training.config import ConfigError, RunConfig, validate_config
from taskbalance.training.diagnostics import diagnostic_record, format_summary, imbalance_summary
from taskbalance.training.loop import RunExistsError, Trainer, TrainingDiverged, train
from taskbalance.training.presets import available_presets, load_config
from taskbalance.training.rundir import RunDir

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
