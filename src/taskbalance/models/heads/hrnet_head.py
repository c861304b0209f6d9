"""HRNet's multi-scale fusion head (Wang et al., TPAMI 2020; MTLP ``models/seg_hrnet.py:HighResolutionHead``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from taskbalance.models.base import resize_to
from taskbalance.models.heads.common import conv_bn_relu


class HRNetHead(nn.Module):
    """Upsample every branch to the finest one, concatenate, 1×1 conv-BN-ReLU, 1×1 classifier.

    Returns logits at the resolution of the finest map (stride 4 for HRNet).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        total = sum(in_channels)
        self.fuse = conv_bn_relu(total, total, kernel_size=1)
        self.classifier = nn.Conv2d(total, out_channels, kernel_size=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Logits from all feature maps (finest first)."""
        size = features[0].shape[-2:]
        return self.classifier(self.fuse(torch.cat([resize_to(f, size) for f in features], dim=1)))
