"""The base of the benchmarks' own networks: a :class:`~taskbalance.models.MultiTaskModel` without a timm
backbone, taking images of a fixed channel count at sizes the network divides exactly (no padding)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from torch import Tensor, nn

from taskbalance.models import ModelError, ModelOutput, MultiTaskModel


class ProtocolModel(MultiTaskModel):
    """Subclasses put the shared network in ``self.shared`` and each task's modules in ``self.task_specific``, set
    ``self.last_shared`` (the ``W`` of GradNorm / AvgNorm) and implement ``_forward``.

    Unlike the study's models the input is not padded: a SegNet's unpooling needs sizes divisible by 32, which the
    benchmarks' fixed resolutions are, so a wrong size is refused with a clear error instead.
    """

    last_shared: nn.Module

    def __init__(self, tasks: Sequence[str], *, in_channels: int, size_divisor: int, single_task: bool = False) -> None:
        if not tasks:
            raise ModelError("a model needs at least one task")
        if single_task and len(tasks) != 1:
            raise ModelError(f"single_task=True builds one model per task; got {len(tasks)} tasks: {list(tasks)}")
        super().__init__(tasks, single_task=single_task, size_divisor=size_divisor)
        self.in_channels = in_channels

    @property
    def backbone(self) -> NoReturn:
        """Protocol networks have no timm backbone: the shared part is ``self.shared``."""
        raise ModelError(f"{type(self).__name__} has no timm backbone; use shared_parameters() / last_shared_layer()")

    def forward_train(self, images: Tensor) -> ModelOutput:
        """Predictions and shared-feature taps for a B×C×H×W batch (C and the size divisor fixed by the network)."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ModelError(
                f"{type(self).__name__} expects images of shape B×{self.in_channels}×H×W, got {tuple(images.shape)}"
            )
        height, width = images.shape[-2:]
        if height % self.size_divisor or width % self.size_divisor:
            raise ModelError(
                f"{type(self).__name__} needs H and W divisible by {self.size_divisor}, got {height}×{width}"
            )
        return self._forward(images)

    def last_shared_layer(self) -> nn.Module:
        """The last layer of the shared network."""
        return self.last_shared


def xavier_init(module: nn.Module) -> None:
    """The MTAN repository's initialisation: Xavier-normal conv / linear weights, zero biases, BN weight 1 bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
