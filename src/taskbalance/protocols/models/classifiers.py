"""The classification networks of the small benchmarks: FAMO's CelebA CNN and MGDA's MultiLeNet.

Both return B×C logits per task (the task's loss applies the softmax / sigmoid that the reference code puts in the
network) and tap the shared representation for the balancers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from taskbalance.models import ModelError, ModelOutput
from taskbalance.models.base import tap
from taskbalance.protocols.models.base import ProtocolModel

#: FAMO's CelebA widths: conv 64 | 128 128 | 256 256 | 512 512, then two 512-wide FC layers.
CELEBA_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _fc_bn_relu(in_features: int, out_features: int) -> list[nn.Module]:
    return [nn.Linear(in_features, out_features, bias=False), nn.BatchNorm1d(out_features), nn.ReLU(inplace=True)]


class CelebACNN(ProtocolModel):
    """FAMO's CelebA network (``Cranial-XIX/FAMO experiments/celeba/models.py``): 7 conv-BN-ReLU layers with three
    max-pools, global average pooling, two FC-BN-ReLU layers (the "9-layer CNN"), one linear logit per attribute.

    ``widths`` scales the four stages (CPU stand-ins use small ones); the FC width is ``widths[-1]``.
    """

    def __init__(self, task_channels: Mapping[str, int], *, widths: Sequence[int] = CELEBA_WIDTHS,
                 single_task: bool = False) -> None:
        super().__init__(list(task_channels), in_channels=3, size_divisor=8, single_task=single_task)
        w = list(widths)
        if len(w) != 4 or min(w) < 1:
            raise ModelError(f"CelebACNN needs 4 positive stage widths, got {widths}")
        layers = _conv_bn_relu(3, w[0]) + [nn.MaxPool2d(2)]
        for stage in range(1, 4):
            layers += _conv_bn_relu(w[stage - 1], w[stage]) + _conv_bn_relu(w[stage], w[stage])
            if stage < 3:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()] + _fc_bn_relu(w[3], w[3]) + _fc_bn_relu(w[3], w[3])
        encoder = nn.Sequential(*layers)
        self.shared["encoder"] = encoder
        self.last_shared = encoder[-3]
        for task, channels in task_channels.items():
            self.task_modules(task)["head"] = nn.Linear(w[3], channels)

    def _forward(self, images: Tensor) -> ModelOutput:
        taps: list[Tensor] = []
        shared = tap(self.shared["encoder"](images), taps)
        return ModelOutput({task: self.task_modules(task)["head"](shared) for task in self.tasks}, features=taps)


class MultiLeNet(ProtocolModel):
    """MGDA's MultiLeNet (``isl-org/MultiObjectiveOptimization multi_task/models/multi_lenet.py``) for 1×28×28 inputs.

    Shared: conv(1→10, 5) – max-pool – ReLU – conv(10→20, 5) – Dropout2d(½) – max-pool – ReLU – FC(320→50) – ReLU.
    Head per task: FC(50→50) – ReLU – FC(50→C).
    """

    def __init__(self, task_channels: Mapping[str, int], *, single_task: bool = False) -> None:
        super().__init__(list(task_channels), in_channels=1, size_divisor=1, single_task=single_task)
        encoder = nn.Sequential(
            nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(10, 20, 5), nn.Dropout2d(0.5), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(320, 50), nn.ReLU(),
        )
        self.shared["encoder"] = encoder
        self.last_shared = encoder[-2]
        for task, channels in task_channels.items():
            self.task_modules(task)["head"] = nn.Sequential(nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, channels))

    def _forward(self, images: Tensor) -> ModelOutput:
        if images.shape[-2:] != (28, 28):
            raise ModelError(f"MultiLeNet expects 28×28 images, got {tuple(images.shape[-2:])}")
        taps: list[Tensor] = []
        shared = tap(self.shared["encoder"](images), taps)
        return ModelOutput({task: self.task_modules(task)["head"](shared) for task in self.tasks}, features=taps)
