"""Task decoders: one per backbone family (DeepLab ASPP for ResNets, HRNet fusion, ViT token-map head)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from taskbalance.models.backbones import Backbone
from taskbalance.models.heads.aspp import ASPPHead
from taskbalance.models.heads.hrnet_head import HRNetHead
from taskbalance.models.heads.vit_head import ViTHead

__all__ = ["ASPPHead", "HRNetHead", "ViTHead", "build_head"]


def build_head(backbone: Backbone, out_channels: int, channels: int = 256,
               aspp_rates: Sequence[int] = (12, 24, 36)) -> nn.Module:
    """The reference decoder for ``backbone``'s family; ``channels`` is its width (ASPP and ViT heads)."""
    if backbone.family == "resnet":
        return ASPPHead(backbone.channels[-1], out_channels, channels=channels, rates=aspp_rates)
    if backbone.family == "hrnet":
        return HRNetHead(backbone.channels, out_channels)
    return ViTHead(backbone.channels[-1], out_channels, channels=channels)
