"""MTAN: task-specific attention modules on the stages of a shared ResNet (Liu, Johns & Davison, CVPR 2019),
built as MTLP ``models/mtan.py`` does for dense prediction: each task's mask is computed from the features
before the last block of a stage (and the task's previous attended features), and gates that stage's output;
a refinement bottleneck then adapts the attended features to the next stage, with max-pooling where the backbone
downsamples. With one task this is the paper's "MTAN single-task" twin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from timm.models.resnet import Bottleneck
from torch import Tensor, nn

from taskbalance.models.backbones import CNNBackbone
from taskbalance.models.base import ModelError, ModelOutput, MultiTaskModel, as_type, resize_to, tap
from taskbalance.models.heads import build_head


def attention_layer(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """MTAN's attention module: 1×1 conv-BN-ReLU → 1×1 conv-BN → sigmoid mask."""
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 1), nn.BatchNorm2d(mid_channels), nn.ReLU(),
        nn.Conv2d(mid_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.Sigmoid(),
    )


def refinement_block(in_channels: int, out_channels: int) -> nn.Module:
    """One timm bottleneck mapping the attended features of a stage to the width of the next stage."""
    downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
    return Bottleneck(in_channels, out_channels // 4, downsample=downsample)


class MTANModel(MultiTaskModel):
    """MTAN on a dilated ResNet; heads are ASPP on each task's attended last stage.

    The refinement blocks are shared by all tasks as in MTAN (``shared_refinement=True``) but sit on the
    task branches, so they lie beyond ``features``: use the ``params`` or ``last_layer`` gradient source, or
    ``shared_refinement=False`` (one refinement block per task) to make ``features`` an exact cut.

    ``features``: per stage, the backbone tensor before its last block and the stage output (the tensors the
    attention branches read).
    """

    def __init__(self, backbone: CNNBackbone, task_channels: Mapping[str, int], *, single_task: bool = False,
                 head_channels: int = 256, aspp_rates: Sequence[int] = (12, 24, 36),
                 shared_refinement: bool = True) -> None:
        if backbone.family != "resnet":
            raise ModelError(f"MTAN needs a ResNet backbone (resnet18, resnet50, tiny), not {backbone.spec.name!r}")
        super().__init__(list(task_channels), single_task=single_task, size_divisor=backbone.size_divisor)
        self.shared["backbone"] = backbone
        stages = backbone.stages
        out_ch = [_out_channels(stage[-1]) for stage in stages]
        pre_ch = [as_type(stage[-1].conv1, nn.Conv2d).in_channels for stage in stages]
        self.shared_refinement = shared_refinement
        self.downsample = [_stride(stage[0]) > 1 for stage in stages[1:]]

        def refinements() -> nn.ModuleList:
            return nn.ModuleList(refinement_block(out_ch[j], out_ch[j + 1]) for j in range(len(stages) - 1))

        if shared_refinement:
            self.shared["refinement"] = refinements()
        for task, out in task_channels.items():
            modules = self.task_modules(task)
            modules["attention"] = nn.ModuleList(
                attention_layer(pre_ch[j] + (out_ch[j] if j else 0), out_ch[j] // 4, out_ch[j])
                for j in range(len(stages))
            )
            if not shared_refinement:
                modules["refinement"] = refinements()
            modules["head"] = build_head(backbone, out, channels=head_channels, aspp_rates=aspp_rates)

    def _refinement(self, task: str) -> nn.ModuleList:
        owner = self.shared if self.shared_refinement else self.task_modules(task)
        return as_type(owner["refinement"], nn.ModuleList)

    def _forward(self, images: Tensor) -> ModelOutput:
        backbone = self.backbone
        assert isinstance(backbone, CNNBackbone)
        taps: list[Tensor] = []
        before_last, outputs = [], []
        x = backbone.forward_stem(images)
        for stage in backbone.stages:
            u = stage[:-1](x)
            x = stage[-1](u)
            before_last.append(tap(u, taps))
            outputs.append(tap(x, taps))
        predictions = {}
        for task in self.tasks:
            modules = self.task_modules(task)
            attention, refinement = as_type(modules["attention"], nn.ModuleList), self._refinement(task)
            attended: Tensor | None = None
            for j, (u, out) in enumerate(zip(before_last, outputs)):
                inputs = u if attended is None else torch.cat([u, attended], dim=1)
                attended = attention[j](inputs) * out
                if j < len(outputs) - 1:
                    attended = refinement[j](attended)
                    if self.downsample[j]:
                        attended = nn.functional.max_pool2d(attended, kernel_size=2, stride=2)
            predictions[task] = resize_to(modules["head"]([attended]), images.shape[-2:])
        return ModelOutput(predictions=predictions, features=taps)


def _out_channels(block: nn.Module) -> int:
    """Output width of a timm ResNet block (``conv3`` of a bottleneck, ``conv2`` of a basic block)."""
    last = block.conv3 if hasattr(block, "conv3") else block.conv2
    return as_type(last, nn.Conv2d).out_channels


def _stride(block: nn.Module) -> int:
    """Spatial stride of a ResNet block (its largest convolution stride)."""
    return max(int(m.stride[0]) for m in block.modules() if isinstance(m, nn.Conv2d))
