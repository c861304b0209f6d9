"""Head for plain ViT features: the patch-token map (timm already reshapes tokens to B×D×H/p×W/p) →
3×3 conv-BN-ReLU → 1×1 classifier, upsampled to the input by the model; InvPT's final ``mt_proj`` + ``MLPHead``
(Ye & Xu, ECCV 2022, ``InvPT/models/transformers``) on a single ViT level."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from taskbalance.models.heads.common import conv_bn_relu


class ViTHead(nn.Module):
    """3×3 conv-BN-ReLU on the last token map, then a 1×1 classifier (logits at stride = patch size)."""

    def __init__(self, in_channels: int, out_channels: int, channels: int = 256) -> None:
        super().__init__()
        self.refine = conv_bn_relu(in_channels, channels, kernel_size=3)
        self.classifier = nn.Conv2d(channels, out_channels, kernel_size=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Logits from the last token map."""
        return self.classifier(self.refine(features[-1]))
