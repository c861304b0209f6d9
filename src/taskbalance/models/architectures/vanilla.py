"""Hard parameter sharing: one shared backbone, one decoder per task (MTLP ``models/models.py:MultiTaskModel``;
the paper's vanilla MTL and, with one task, its single-task baseline)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from taskbalance.models.backbones import Backbone
from taskbalance.models.base import ModelOutput, MultiTaskModel, resize_to, tap
from taskbalance.models.heads import build_head


class VanillaModel(MultiTaskModel):
    """Shared backbone + per-task head (ASPP for ResNets, HRNet fusion head, ViT head).

    ``features``: the backbone's output maps (the dilated last stage for ResNets, the four branches for HRNet,
    the last token map for ViTs); the heads read nothing else.
    """

    def __init__(self, backbone: Backbone, task_channels: Mapping[str, int], *, single_task: bool = False,
                 head_channels: int = 256, aspp_rates: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__(list(task_channels), single_task=single_task, size_divisor=backbone.size_divisor)
        self.shared["backbone"] = backbone
        for task, out in task_channels.items():
            self.task_modules(task)["head"] = build_head(backbone, out, channels=head_channels, aspp_rates=aspp_rates)

    def _forward(self, images: Tensor) -> ModelOutput:
        taps: list[Tensor] = []
        features = [tap(f, taps) for f in self.backbone(images)]
        size = images.shape[-2:]
        predictions = {t: resize_to(self.task_modules(t)["head"](features), size) for t in self.tasks}
        return ModelOutput(predictions=predictions, features=taps)
