"""Multi-task models: timm backbones, task decoders and the paper's architectures with their single-task twins.

See ``docs/contracts.md`` (``taskbalance.models``) for the interface the trainer and the balancers rely on.

May import: ``registration`` only (timm and torch outside the package); never data, training or the study.
"""

from taskbalance.models.backbones import Backbone, available_backbones, build_backbone
from taskbalance.models.base import ModelError, ModelOutput, MultiTaskModel, count_parameters
from taskbalance.models.pretrained import MissingWeightsError
from taskbalance.models.registry import (
    available_architectures,
    build_model,
    build_single_task_models,
    compatible_backbones,
)

__all__ = [
    "Backbone",
    "MissingWeightsError",
    "ModelError",
    "ModelOutput",
    "MultiTaskModel",
    "available_architectures",
    "available_backbones",
    "build_backbone",
    "build_model",
    "build_single_task_models",
    "compatible_backbones",
    "count_parameters",
]
