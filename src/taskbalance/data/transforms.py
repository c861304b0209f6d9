"""Geometric and photometric transforms applied consistently to an image and all its targets.

A *sample* is an item before normalisation: ``image`` float RGB in [0, 1] (3×H×W), one target per task in the
format of :mod:`taskbalance.conventions`, and ``meta``. Rules, as in the paper's recipe (ATRC/InvPT):

- the image is resampled bilinearly, every target with nearest neighbour (labels stay labels);
- depth *values* are never rescaled when the image is (the metres of a pixel do not change with zoom);
- a horizontal flip negates the x component of the normals (camera frame: x right, y down, z forward);
- padded pixels get each task's ignore value (``IGNORE_VALUE``), the image gets the mean colour (0 after
  normalisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from taskbalance.conventions import IGNORE_VALUE

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augmentation",
    "Sample",
    "color_jitter",
    "crop_or_pad",
    "hflip",
    "normalize",
    "resize",
    "spatial_size",
]

Sample = dict[str, Any]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _targets(sample: Sample) -> list[str]:
    return [k for k in sample if k not in ("image", "meta")]


def spatial_size(sample: Sample) -> tuple[int, int]:
    """(H, W) of the sample's image."""
    return int(sample["image"].shape[-2]), int(sample["image"].shape[-1])


def normalize(image: Tensor) -> Tensor:
    """ImageNet normalisation of a 3×H×W float image in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype).view(3, 1, 1)
    return (image - mean) / std


def _resize_nearest(target: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(target.shape[-2:]) == size:
        return target
    batched = target.reshape(1, -1, *target.shape[-2:])
    out = F.interpolate(batched.to(torch.float32), size=size, mode="nearest")
    return out.reshape(*target.shape[:-2], *size).to(target.dtype)


def resize(sample: Sample, size: tuple[int, int]) -> Sample:
    """Resize the image (bilinear, antialiased) and every target (nearest) to ``size`` = (H, W)."""
    size = (int(size[0]), int(size[1]))
    out = dict(sample)
    if spatial_size(sample) != size:
        out["image"] = F.interpolate(
            sample["image"][None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0].clamp_(0.0, 1.0)
    for task in _targets(sample):
        out[task] = _resize_nearest(sample[task], size)
    return out


def _place(tensor: Tensor, size: tuple[int, int], top: int, left: int, fill: Tensor | float) -> Tensor:
    """The window of ``size`` whose top-left corner sits at (top, left) of ``tensor``; outside is ``fill``."""
    height, width = tensor.shape[-2:]
    out = torch.empty(*tensor.shape[:-2], *size, dtype=tensor.dtype)
    out[...] = fill
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size[0], height), min(left + size[1], width)
    if y1 > y0 and x1 > x0:
        out[..., y0 - top : y1 - top, x0 - left : x1 - left] = tensor[..., y0:y1, x0:x1]
    return out


def crop_or_pad(sample: Sample, size: tuple[int, int], top: int, left: int) -> Sample:
    """Cut a ``size`` window at (top, left) (negative offsets pad); padding gets each task's ignore value."""
    out = dict(sample)
    out["image"] = _place(sample["image"], size, top, left, torch.tensor(IMAGENET_MEAN).view(3, 1, 1))
    for task in _targets(sample):
        out[task] = _place(sample[task], size, top, left, IGNORE_VALUE[task])
    return out


def hflip(sample: Sample) -> Sample:
    """Mirror left-right; the normals' x component changes sign."""
    out = dict(sample)
    out["image"] = sample["image"].flip(-1)
    for task in _targets(sample):
        out[task] = sample[task].flip(-1)
    if "normals" in out:
        out["normals"] = out["normals"].clone()
        out["normals"][0].neg_()
    return out


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def color_jitter(
    image: Tensor,
    generator: torch.Generator,
    brightness: float = 0.25,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.05,
) -> Tensor:
    """Random brightness, contrast, saturation (factors in [1-s, 1+s]) and hue shift (in [-hue, hue])."""
    from torchvision.transforms.v2 import functional as TF  # here: torchvision costs seconds to import

    if brightness:
        image = TF.adjust_brightness(image, _uniform(generator, 1 - brightness, 1 + brightness))
    if contrast:
        image = TF.adjust_contrast(image, _uniform(generator, 1 - contrast, 1 + contrast))
    if saturation:
        image = TF.adjust_saturation(image, _uniform(generator, 1 - saturation, 1 + saturation))
    if hue:
        image = TF.adjust_hue(image, _uniform(generator, -hue, hue))
    return image.clamp(0.0, 1.0)


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation: colour jitter, random scale, random crop/pad, horizontal flip.

    Attributes:
        scale_range: the image is resized by a factor drawn uniformly from this range.
        crop_size: output (H, W); ``None`` keeps the sample's own size.
        flip_prob: probability of a horizontal flip.
        brightness, contrast, saturation, hue: colour-jitter strengths (0 disables one).
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] | None = None
    flip_prob: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.05

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob}")

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        """Augment ``sample`` with draws from ``generator``."""
        size = self.crop_size or spatial_size(sample)
        sample = dict(sample)
        sample["image"] = color_jitter(
            sample["image"], generator, self.brightness, self.contrast, self.saturation, self.hue
        )
        factor = _uniform(generator, *self.scale_range)
        height, width = spatial_size(sample)
        sample = resize(sample, (max(1, round(height * factor)), max(1, round(width * factor))))
        height, width = spatial_size(sample)
        top = _randint(generator, min(0, height - size[0]), max(0, height - size[0]))
        left = _randint(generator, min(0, width - size[1]), max(0, width - size[1]))
        sample = crop_or_pad(sample, size, top, left)
        if float(torch.rand((), generator=generator)) < self.flip_prob:
            sample = hflip(sample)
        return sample


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator))
