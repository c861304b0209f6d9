"""InvPT: inverted-pyramid multi-task transformer (Ye & Xu, ECCV 2022; ``prismformore/Multi-Task-Transformer``
``InvPT/models/transformers/{transformer_decoder,invpt}.py``).

A ViT encoder gives token maps after four evenly spaced blocks. The last one, downsampled ×2, goes through a
per-task preliminary decoder (two conv blocks) and a 1×1 intermediate prediction (deep supervision); features and
prediction are mixed (1×1) into each task's input of the decoder. Three UP-Transformer stages then attend jointly
over the tokens of all tasks (queries from a stride-2 depthwise conv + BN, keys/values average-pooled with strides
2/4/8, attention scores of the previous stage upsampled and fused in: "attention message passing"), doubling the
resolution between stages (bilinear ×2 + two dilated 3×3 convs per task) and adding the backbone's first and second
levels as skips. Each stage's output, normalised jointly over the tasks' channels, is reduced per task to the
first stage's width, upsampled to stride p/4 and summed; a per-task 3×3 conv-BN-ReLU and a 1×1 classifier predict.

Single-task twin (Sec. V-C): the same decoder on one task (the joint attention becomes self-attention).

Sharing: everything up to the joint per-stage normalisation (encoder, preliminary decoders and intermediate
classifiers, whose outputs enter the joint attention) is shared; each task owns its per-stage reductions, final
conv and classifier. ``features``: the intermediate predictions (read by deep supervision) and each stage's
normalised per-task slices.

Inputs are padded to a multiple of 4 × patch size (the resolutions of the three stages must halve evenly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from taskbalance.models.backbones import Backbone
from taskbalance.models.base import ModelError, ModelOutput, MultiTaskModel, as_type, resize_to, tap
from taskbalance.models.heads.common import conv_bn_relu

KV_STRIDES = (2, 4, 8)


def _flatten(x: Tensor) -> Tensor:
    return x.flatten(2).transpose(1, 2)


def _unflatten(tokens: Tensor, count: int, size: Sequence[int]) -> list[Tensor]:
    """Split B×(count·h·w)×C tokens into ``count`` B×C×h×w maps."""
    return [t.transpose(1, 2).reshape(t.shape[0], -1, *size) for t in tokens.chunk(count, dim=1)]


class UpEmbed(nn.Module):
    """Between stages: bilinear ×2, then two dilated 3×3 conv-BN-ReLU (official ``UpEmbed``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, 3, dilation=2),
            conv_bn_relu(out_channels, out_channels, 3, dilation=2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class JointAttention(nn.Module):
    """Multi-head attention over the tokens of all tasks, with strided queries and pooled keys/values.

    ``message=True`` fuses the previous stage's attention scores (queries upsampled ×2) with a 1×1 conv over heads.
    Scores are scaled by ``head_dim ** -0.5`` (the official code uses the full width).
    """

    def __init__(self, num_tasks: int, dim: int, num_heads: int, kv_stride: int, message: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ModelError(f"InvPT stage width {dim} is not divisible by {num_heads} heads")
        self.num_tasks, self.num_heads, self.kv_stride = num_tasks, num_heads, kv_stride
        self.query_conv = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, stride=2, padding=1, groups=dim, bias=False), nn.BatchNorm2d(dim))
            for _ in range(num_tasks)
        )
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, dim)
        self.fuse = nn.Conv2d(2 * num_heads, num_heads, 1) if message else None

    def _heads(self, tokens: Tensor) -> Tensor:
        b, n, c = tokens.shape
        return tokens.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, maps: Sequence[Tensor], previous: Tensor | None) -> tuple[list[Tensor], Tensor]:
        """Attended maps (input resolution) and this stage's scores (B×heads×queries×keys)."""
        size = maps[0].shape[-2:]
        queries = [conv(x) for conv, x in zip(self.query_conv, maps)]
        q_size = queries[0].shape[-2:]
        pooled = [F.avg_pool2d(x, self.kv_stride, ceil_mode=True) for x in maps]
        q = self._heads(self.q(torch.cat([_flatten(x) for x in queries], dim=1)))
        kv = torch.cat([_flatten(x) for x in pooled], dim=1)
        k, v = self._heads(self.k(kv)), self._heads(self.v(kv))
        scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        if self.fuse is not None:
            if previous is None:
                raise ModelError("attention message passing needs the previous stage's scores")
            scores = self.fuse(torch.cat([scores, self._upsample_queries(previous, q_size)], dim=1))
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
        attended = _unflatten(self.proj(out), self.num_tasks, q_size)
        return [resize_to(x, size) for x in attended], scores

    def _upsample_queries(self, scores: Tensor, q_size: torch.Size) -> Tensor:
        """Previous scores (queries on a grid half the size of ``q_size``) → queries on ``q_size``."""
        b, heads, n_q, n_k = scores.shape
        grid = (q_size[0] // 2, q_size[1] // 2)
        if n_q != self.num_tasks * grid[0] * grid[1]:
            raise ModelError(f"previous attention has {n_q} queries, expected {self.num_tasks}×{grid[0]}×{grid[1]}")
        maps = scores.view(b * heads * self.num_tasks, *grid, n_k).permute(0, 3, 1, 2)
        maps = resize_to(maps, q_size)
        return maps.permute(0, 2, 3, 1).reshape(b, heads, -1, n_k)


class UPTransformerBlock(nn.Module):
    """Pre-norm transformer block over all tasks' tokens (joint attention, then a per-token MLP)."""

    def __init__(self, num_tasks: int, dim: int, num_heads: int, kv_stride: int, message: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = JointAttention(num_tasks, dim, num_heads, kv_stride, message)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, maps: Sequence[Tensor], previous: Tensor | None) -> tuple[list[Tensor], Tensor]:
        size = maps[0].shape[-2:]
        tokens = torch.cat([_flatten(x) for x in maps], dim=1)
        normed = _unflatten(self.norm1(tokens), len(maps), size)
        attended, scores = self.attn(normed, previous)
        tokens = tokens + torch.cat([_flatten(x) for x in attended], dim=1)
        tokens = tokens + self.mlp(self.norm2(tokens))
        return _unflatten(tokens, len(maps), size), scores


class InvPTModel(MultiTaskModel):
    """InvPT on a ViT backbone; see the module docstring. ``embed_dim`` + ``pred_channels`` is the first stage's
    width (official ViT-L: 512 + 64 → 576, 288, 144), ``num_heads`` the decoder heads (2)."""

    def __init__(self, backbone: Backbone, task_channels: Mapping[str, int], *, single_task: bool = False,
                 embed_dim: int = 512, pred_channels: int = 64, num_heads: int = 2) -> None:
        if backbone.family != "vit" or len(backbone.channels) < 3:
            raise ModelError(f"InvPT needs a ViT backbone with at least 3 blocks, not {backbone.spec.name!r}")
        tasks = list(task_channels)
        super().__init__(tasks, single_task=single_task, size_divisor=4 * backbone.size_divisor)
        dim = backbone.channels[-1]
        widths = [embed_dim + pred_channels, (embed_dim + pred_channels) // 2, (embed_dim + pred_channels) // 4]
        self.shared["backbone"] = backbone
        self.shared["skips"] = nn.ModuleList([
            nn.ConvTranspose2d(dim, widths[2], 3, stride=2, padding=1, output_padding=1),
            nn.Conv2d(dim, widths[1], 3, padding=1),
        ])
        self.shared["preliminary"] = nn.ModuleDict(
            {t: nn.Sequential(conv_bn_relu(dim, dim), conv_bn_relu(dim, embed_dim)) for t in tasks}
        )
        self.shared["intermediate"] = nn.ModuleDict(
            {t: nn.Conv2d(embed_dim, out, 1) for t, out in task_channels.items()}
        )
        self.shared["mix"] = nn.ModuleDict(
            {t: nn.Conv2d(embed_dim + out, widths[0], 1) for t, out in task_channels.items()}
        )
        self.shared["up"] = nn.ModuleList(
            nn.ModuleList(UpEmbed(widths[i - 1], widths[i]) for _ in tasks) for i in (1, 2)
        )
        self.shared["blocks"] = nn.ModuleList(
            UPTransformerBlock(len(tasks), widths[i], num_heads, KV_STRIDES[i], message=i > 0) for i in range(3)
        )
        self.shared["norms"] = nn.ModuleList(nn.LayerNorm(len(tasks) * w) for w in widths)
        for task, out in task_channels.items():
            modules = self.task_modules(task)
            modules["reduce"] = nn.ModuleList(nn.Conv2d(w, widths[0], 1) for w in widths[1:])
            modules["proj"] = conv_bn_relu(widths[0], widths[0])
            modules["head"] = nn.Conv2d(widths[0], out, 1)

    def _forward(self, images: Tensor) -> ModelOutput:
        size = images.shape[-2:]
        shared = self.shared
        preliminary, intermediate, mix = (
            as_type(shared[key], nn.ModuleDict) for key in ("preliminary", "intermediate", "mix")
        )
        skip_convs, ups, blocks, norms = (
            as_type(shared[key], nn.ModuleList) for key in ("skips", "up", "blocks", "norms")
        )
        levels = self.backbone(images)
        grid = levels[-1].shape[-2:]
        x = resize_to(levels[-1], (grid[0] // 2, grid[1] // 2))
        skips = [skip_convs[0](levels[0]), skip_convs[1](levels[1])]
        taps: list[Tensor] = []
        auxiliary, maps = {}, []
        for t in self.tasks:
            feat = preliminary[t](x)
            pred = intermediate[t](feat)
            auxiliary[t] = [resize_to(tap(pred, taps), size)]
            maps.append(mix[t](torch.cat([feat, pred], dim=1)))
        out_size = (4 * x.shape[-2], 4 * x.shape[-1])
        heads = {t: self.task_modules(t) for t in self.tasks}
        reduce = {t: as_type(heads[t]["reduce"], nn.ModuleList) for t in self.tasks}
        parts: dict[str, list[Tensor]] = {t: [] for t in self.tasks}
        scores: Tensor | None = None
        for i, block in enumerate(blocks):
            if i > 0:
                maps = [up(m) + skips[2 - i] for up, m in zip(as_type(ups[i - 1], nn.ModuleList), maps)]
            maps, scores = block(maps, scores)
            stacked = torch.cat(maps, dim=1)
            normed = norms[i](stacked.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            for t, part in zip(self.tasks, normed.chunk(len(self.tasks), dim=1)):
                part = tap(part, taps)
                if i > 0:
                    part = reduce[t][i - 1](part)
                parts[t].append(resize_to(part, out_size))
        predictions = {
            t: resize_to(heads[t]["head"](heads[t]["proj"](sum(parts[t]))), size)
            for t in self.tasks
        }
        return ModelOutput(predictions=predictions, auxiliary=auxiliary, features=taps)
