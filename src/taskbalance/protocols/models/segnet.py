"""SegNet and SegNet-MTAN of the MTAN repository (Liu, Johns & Davison, CVPR 2019; ``lorenmt/mtan``
``im2im_pred/model_segnet_*.py``), the networks of the NYUv2 / Cityscapes tables of CAGrad, Nash-MTL, FAMO,
FairGrad and IMGrad.

The trunk: five encoder levels (conv-BN-ReLU blocks of 64/128/256/512/512 channels, 1, 1, 2, 2, 2 extra blocks,
max-pooling with indices) and a mirrored decoder (max-unpooling with those indices). Heads: 3×3 conv then 1×1 conv
(no normalisation between). *SegNet* (the "split" multi-task baseline) puts every head on the shared decoder
output. *SegNet-MTAN* gives every task soft-attention masks on each encoder and decoder level: a mask computed from
the level's first block (and the task's attended features of the previous level) gates the level's output; the
conv blocks between attended levels (``encoder_block_att`` / ``decoder_block_att``) are shared by the tasks, the
masks are task-specific — Nash-MTL's ``SegNetMtan.shared_parameters()`` partition. Those shared blocks lie beyond the
feature taps, so use the ``params`` or ``last_layer`` gradient source with SegNet-MTAN, or build it with
``shared_attention_blocks=False`` (one copy per task) to make the taps an exact cut (MGDA-UB, ``source="features"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskbalance.models import ModelError, ModelOutput
from taskbalance.models.architectures.mtan import attention_layer
from taskbalance.models.base import as_type, tap
from taskbalance.protocols.models.base import ProtocolModel, xavier_init

#: The MTAN repository's channel widths per level.
SEGNET_FILTERS: tuple[int, ...] = (64, 128, 256, 512, 512)
LEVELS = 5


def conv_block(in_channels: int, out_channels: int, repeats: int = 1) -> nn.Sequential:
    """``repeats`` × (3×3 conv, BN, ReLU); the first maps ``in_channels`` to ``out_channels``."""
    layers: list[nn.Module] = []
    for i in range(repeats):
        layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1),
                   nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def prediction_head(channels: int, out_channels: int) -> nn.Sequential:
    """MTAN's prediction layer: 3×3 conv (same width) then 1×1 conv to the task's channels."""
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.Conv2d(channels, out_channels, 1))


@dataclass
class TrunkOutput:
    """The shared tensors of one forward: per encoder level the first block's and the level's output; per
    decoder step (coarse to fine) the unpooled input and the step's output."""

    encoder_first: list[Tensor]
    encoder_out: list[Tensor]
    unpooled: list[Tensor]
    decoder_out: list[Tensor]


class SegNetTrunk(nn.Module):
    """The shared SegNet encoder–decoder (``encoder_block``, ``conv_block_enc``, ``decoder_block``,
    ``conv_block_dec``)."""

    def __init__(self, filters: Sequence[int] = SEGNET_FILTERS, in_channels: int = 3) -> None:
        super().__init__()
        f = list(filters)
        if len(f) != LEVELS or min(f) < 1:
            raise ModelError(f"SegNet needs {LEVELS} positive channel widths, got {filters}")
        self.encoder_block = nn.ModuleList(
            [conv_block(in_channels, f[0])] + [conv_block(f[i], f[i + 1]) for i in range(4)]
        )
        self.conv_block_enc = nn.ModuleList(conv_block(f[i], f[i], 1 if i < 2 else 2) for i in range(LEVELS))
        self.decoder_block = nn.ModuleList(
            [conv_block(f[0], f[0])] + [conv_block(f[i], f[i - 1]) for i in range(1, LEVELS)]
        )
        self.conv_block_dec = nn.ModuleList(
            [conv_block(f[0], f[0]), conv_block(f[0], f[0])]
            + [conv_block(f[i - 1], f[i - 1], 2) for i in range(2, LEVELS)]
        )

    def forward(self, x: Tensor) -> TrunkOutput:
        """All shared intermediate tensors (see :class:`TrunkOutput`)."""
        out = TrunkOutput([], [], [], [])
        indices = []
        for level in range(LEVELS):
            first = self.encoder_block[level](x)
            last = self.conv_block_enc[level](first)
            x, index = F.max_pool2d(last, 2, 2, return_indices=True)
            out.encoder_first.append(first)
            out.encoder_out.append(last)
            indices.append(index)
        for step in range(LEVELS):
            level = LEVELS - 1 - step
            x = F.max_unpool2d(x, indices[level], (2, 2), (2, 2), output_size=out.encoder_out[level].shape[-2:])
            out.unpooled.append(x)
            x = self.conv_block_dec[level](self.decoder_block[level](x))
            out.decoder_out.append(x)
        return out


class SegNet(ProtocolModel):
    """SegNet with one prediction head per task on the shared decoder output (MTAN repo ``model_segnet_split``)."""

    def __init__(self, task_channels: Mapping[str, int], *, filters: Sequence[int] = SEGNET_FILTERS,
                 single_task: bool = False) -> None:
        super().__init__(list(task_channels), in_channels=3, size_divisor=2**LEVELS, single_task=single_task)
        trunk = SegNetTrunk(filters)
        self.shared["trunk"] = trunk
        self.last_shared = trunk.conv_block_dec[0]
        for task, channels in task_channels.items():
            self.task_modules(task)["head"] = prediction_head(filters[0], channels)
        xavier_init(self)

    def _forward(self, images: Tensor) -> ModelOutput:
        taps: list[Tensor] = []
        shared = tap(self.shared["trunk"](images).decoder_out[-1], taps)
        predictions = {task: self.task_modules(task)["head"](shared) for task in self.tasks}
        return ModelOutput(predictions=predictions, features=taps)


class SegNetMTAN(ProtocolModel):
    """SegNet-MTAN (MTAN repo ``model_segnet_mtan``): per-task attention on every level of the shared SegNet."""

    def __init__(self, task_channels: Mapping[str, int], *, filters: Sequence[int] = SEGNET_FILTERS,
                 single_task: bool = False, shared_attention_blocks: bool = True) -> None:
        super().__init__(list(task_channels), in_channels=3, size_divisor=2**LEVELS, single_task=single_task)
        f = list(filters)
        trunk = SegNetTrunk(f)
        self.shared["trunk"] = trunk
        self.last_shared = trunk.conv_block_dec[0]
        self.shared_attention_blocks = shared_attention_blocks

        def attention_blocks(owner: nn.ModuleDict) -> None:
            owner["encoder_block_att"] = nn.ModuleList(
                conv_block(f[j], f[min(j + 1, LEVELS - 1)]) for j in range(LEVELS)
            )
            owner["decoder_block_att"] = nn.ModuleList(
                [conv_block(f[0], f[0])] + [conv_block(f[k], f[k - 1]) for k in range(1, LEVELS)])

        if shared_attention_blocks:
            attention_blocks(self.shared)
        for task, channels in task_channels.items():
            modules = self.task_modules(task)
            if not shared_attention_blocks:
                attention_blocks(modules)
            modules["encoder_att"] = nn.ModuleList(
                [attention_layer(f[0], f[0], f[0])] + [attention_layer(2 * f[j], f[j], f[j]) for j in range(1, LEVELS)])
            modules["decoder_att"] = nn.ModuleList(
                [attention_layer(2 * f[0], f[0], f[0])]
                + [attention_layer(f[k] + f[k - 1], f[k - 1], f[k - 1]) for k in range(1, LEVELS)]
            )
            modules["head"] = prediction_head(f[0], channels)
        xavier_init(self)

    def _forward(self, images: Tensor) -> ModelOutput:
        taps: list[Tensor] = []
        trunk = self.shared["trunk"](images)
        encoder_first = [tap(t, taps) for t in trunk.encoder_first]
        encoder_out = [tap(t, taps) for t in trunk.encoder_out]
        unpooled = [tap(t, taps) for t in trunk.unpooled]
        decoder_out = [tap(t, taps) for t in trunk.decoder_out]
        predictions = {}
        for task in self.tasks:
            modules = self.task_modules(task)
            blocks = self.shared if self.shared_attention_blocks else modules
            encoder_block_att = as_type(blocks["encoder_block_att"], nn.ModuleList)
            decoder_block_att = as_type(blocks["decoder_block_att"], nn.ModuleList)
            encoder_att = as_type(modules["encoder_att"], nn.ModuleList)
            decoder_att = as_type(modules["decoder_att"], nn.ModuleList)
            attended: Tensor | None = None
            for level in range(LEVELS):
                inputs = (
                    encoder_first[level] if attended is None else torch.cat([encoder_first[level], attended], dim=1)
                )
                gated = encoder_att[level](inputs) * encoder_out[level]
                attended = F.max_pool2d(encoder_block_att[level](gated), 2, 2)
            assert attended is not None
            for step in range(LEVELS):
                level = LEVELS - 1 - step
                upsampled = F.interpolate(attended, scale_factor=2, mode="bilinear", align_corners=True)
                refined = decoder_block_att[level](upsampled)
                mask = decoder_att[level](torch.cat([unpooled[step], refined], dim=1))
                attended = mask * decoder_out[step]
            predictions[task] = modules["head"](attended)
        return ModelOutput(predictions=predictions, features=taps)
