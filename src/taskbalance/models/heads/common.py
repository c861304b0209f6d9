"""Building blocks shared by the heads and decoders."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1) -> nn.Sequential:
    """Conv (no bias, 'same' padding) → BatchNorm → ReLU; the unit of DeepLab, HRNet and InvPT heads.

    The ReLU is not in-place: heads read shared feature taps, which must not be modified.
    """
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )
