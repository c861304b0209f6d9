"""DeepLab-v3 ASPP head (Chen et al., 2017, arXiv:1706.05587) as MTLP ``models/aspp.py`` uses it on dilated ResNets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from taskbalance.models.heads.common import conv_bn_relu


class _ImagePooling(nn.Module):
    """ASPP's image-level branch: global average pooling, 1×1 conv-BN-ReLU, broadcast back to the map size."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.project = conv_bn_relu(in_channels, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.pool(x)).expand(-1, -1, *x.shape[-2:])


class ASPPHead(nn.Module):
    """ASPP (1×1, three dilated 3×3, image pooling) → 1×1 projection, BN, ReLU, dropout → 3×3 conv-BN-ReLU → 1×1.

    Reads the last (output-stride-8) feature map; returns logits at that resolution. The image-pooling branch
    has batch norm on a 1×1 map, so training needs batches of at least 2 (as in torchvision's DeepLab-v3).
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int = 256,
                 rates: Sequence[int] = (12, 24, 36), dropout: float = 0.5) -> None:
        super().__init__()
        branches: list[nn.Module] = [conv_bn_relu(in_channels, channels, kernel_size=1)]
        branches += [conv_bn_relu(in_channels, channels, kernel_size=3, dilation=rate) for rate in rates]
        branches.append(_ImagePooling(in_channels, channels))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            conv_bn_relu(len(branches) * channels, channels, kernel_size=1), nn.Dropout(dropout)
        )
        self.refine = conv_bn_relu(channels, channels, kernel_size=3)
        self.classifier = nn.Conv2d(channels, out_channels, kernel_size=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Logits from the last feature map."""
        x = features[-1]
        x = self.project(torch.cat([branch(x) for branch in self.branches], dim=1))
        return self.classifier(self.refine(x))
