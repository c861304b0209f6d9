"""MTI-Net (Vandenhende, Georgoulis & Van Gool, ECCV 2020), as in MTLP ``models/mti_net.py`` and
``models/padnet.py`` (multi-modal distillation of PAD-Net, Xu et al., CVPR 2018).

From the coarsest scale to the finest, an initial-prediction module refines, per task, the backbone feature
(concatenated with the feature propagated from the coarser scale) with two basic blocks and predicts the task
(deep supervision). The feature propagation module (FPM) mixes the tasks' features with a per-channel softmax
over tasks, reduces them and hands each task a squeeze-and-excitation view plus its own features. At every
scale, distillation adds to each task sigmoid-gated convolutions of the other tasks' features; an HRNet fusion
head per task aggregates the four distilled scales.

Single-task twin (the paper's Sec. V-C, "MTI-Net single-task"): the same modules on one task, with
self-distillation (the gated convolution reads the task's own features) in place of cross-task distillation,
and the FPM's softmax over tasks, constant with one task, replaced by a sigmoid gate.

Sharing: the initial-prediction refinement blocks and the FPMs feed every task (through the FPM and the
distillation) and are shared; each task owns its deep-supervision classifiers, the distillation convolutions
that write into it, and its head. ``features`` are the refined per-task features at every scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from timm.layers import SEModule
from timm.models.resnet import BasicBlock
from torch import Tensor, nn

from taskbalance.models.backbones import Backbone
from taskbalance.models.base import ModelError, ModelOutput, MultiTaskModel, as_type, resize_to, tap
from taskbalance.models.heads import HRNetHead


def basic_block(in_channels: int, out_channels: int) -> BasicBlock:
    """A timm ResNet basic block, with a 1×1 projection shortcut when the widths differ."""
    downsample = None
    if in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
    return BasicBlock(in_channels, out_channels, downsample=downsample)


class FeaturePropagation(nn.Module):
    """MTI-Net's FPM at one scale: task attention over the concatenated task features, shared reduction, per-task SE.

    ``out_t = SE_t(reduce(mask ⊙ concat)) + x_t`` with ``mask`` a softmax over tasks (sigmoid for one task).
    The softmax runs over the task axis of the task-major concatenation, as the paper describes; MTLP's
    ``view(B, C // N, N, H, W)`` groups N adjacent channels of the same task instead.
    """

    def __init__(self, tasks: Sequence[str], channels: int) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        total = len(self.tasks) * channels
        self.mix = nn.Sequential(
            basic_block(total, total // 4), basic_block(total // 4, total // 4), nn.Conv2d(total // 4, total, 1)
        )
        self.reduce = basic_block(total, channels)
        self.se = nn.ModuleDict({t: SEModule(channels, rd_channels=max(1, channels // 16)) for t in self.tasks})

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Propagated feature per task (same width as the inputs)."""
        concat = torch.cat([features[t] for t in self.tasks], dim=1)
        b, c, h, w = concat.shape
        logits = self.mix(concat).view(b, len(self.tasks), c // len(self.tasks), h, w)
        mask = logits.softmax(dim=1) if len(self.tasks) > 1 else logits.sigmoid()
        mixed = self.reduce((mask * concat.view_as(mask)).view(b, c, h, w))
        return {t: self.se[t](mixed) + features[t] for t in self.tasks}


class GatedConv(nn.Module):
    """PAD-Net's distillation unit: ``conv(x) ⊙ sigmoid(conv'(x))`` (3×3 convolutions, no bias)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.sigmoid(self.gate(x))


class MTINetModel(MultiTaskModel):
    """MTI-Net on a multi-scale backbone (HRNet-18, or a ResNet at output stride 32); see the module docstring."""

    def __init__(self, backbone: Backbone, task_channels: Mapping[str, int], *, single_task: bool = False) -> None:
        if backbone.family == "vit" or len(backbone.channels) != 4:
            raise ModelError(
                f"MTI-Net needs a 4-scale CNN backbone (hrnet18, resnet18, resnet50, tiny), not {backbone.spec.name!r}"
            )
        tasks = list(task_channels)
        if len(tasks) == 1 and not single_task:
            raise ModelError(
                "MTI-Net distils across tasks and needs at least 2; for its single-task twin pass single_task=True"
            )
        super().__init__(tasks, single_task=single_task, size_divisor=backbone.size_divisor)
        ch = backbone.channels
        self.shared["backbone"] = backbone
        # scale s refines concat(backbone_s, propagated_{s+1}) except the coarsest scale, which has no propagated input
        self.shared["refine"] = nn.ModuleList(
            nn.ModuleDict(
                {
                    t: nn.Sequential(basic_block(ch[s] + (ch[s + 1] if s < 3 else 0), ch[s]), basic_block(ch[s], ch[s]))
                    for t in tasks
                }
            )
            for s in range(4)
        )
        self.shared["fpm"] = nn.ModuleList(FeaturePropagation(tasks, ch[s]) for s in (1, 2, 3))
        for task, out in task_channels.items():
            sources = [a for a in tasks if a != task] or [task]
            modules = self.task_modules(task)
            modules["initial"] = nn.ModuleList(nn.Conv2d(ch[s], out, 1) for s in range(4))
            modules["distill"] = nn.ModuleList(nn.ModuleDict({a: GatedConv(ch[s]) for a in sources}) for s in range(4))
            modules["head"] = HRNetHead(ch, out)

    def _forward(self, images: Tensor) -> ModelOutput:
        size = images.shape[-2:]
        backbone_features = self.backbone(images)
        refine, fpm = as_type(self.shared["refine"], nn.ModuleList), as_type(self.shared["fpm"], nn.ModuleList)
        taps: list[Tensor] = []
        per_scale: list[dict[str, Tensor]] = [{} for _ in range(4)]
        propagated: dict[str, Tensor] | None = None
        for s in (3, 2, 1, 0):
            x = backbone_features[s]
            refined = {}
            level = as_type(refine[s], nn.ModuleDict)
            for t in self.tasks:
                inputs = x if propagated is None else torch.cat([x, resize_to(propagated[t], x.shape[-2:])], dim=1)
                refined[t] = level[t](inputs)
            if s > 0:
                propagated = fpm[s - 1](refined)
            per_scale[s] = {t: tap(f, taps) for t, f in refined.items()}
        predictions, auxiliary = {}, {}
        for t in self.tasks:
            modules = self.task_modules(t)
            initial, distill = as_type(modules["initial"], nn.ModuleList), as_type(modules["distill"], nn.ModuleList)
            auxiliary[t] = [resize_to(initial[s](per_scale[s][t]), size) for s in range(4)]
            distilled = [
                per_scale[s][t] + sum(unit(per_scale[s][a]) for a, unit in as_type(distill[s], nn.ModuleDict).items())
                for s in range(4)
            ]
            predictions[t] = resize_to(modules["head"](distilled), size)
        return ModelOutput(predictions=predictions, auxiliary=auxiliary, features=taps)
