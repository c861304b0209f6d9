"""Training: configs and presets, the resumable loop with gradient diagnostics, checkpoints, and the study."""

from taskbalance.training.config import ConfigError, RunConfig, validate_config
from taskbalance.training.diagnostics import diagnostic_record, format_summary, imbalance_summary
from taskbalance.training.loop import RunExistsError, Trainer, TrainingDiverged, train
from taskbalance.training.presets import available_presets, load_config
from taskbalance.training.rundir import RunDir
from taskbalance.training.schedule import run_study
from taskbalance.training.study import StudySpec, load_study, plan

__all__ = [
    "ConfigError",
    "RunConfig",
    "RunDir",
    "RunExistsError",
    "StudySpec",
    "Trainer",
    "TrainingDiverged",
    "available_presets",
    "diagnostic_record",
    "format_summary",
    "imbalance_summary",
    "load_config",
    "load_study",
    "plan",
    "run_study",
    "train",
    "validate_config",
]
