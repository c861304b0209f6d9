"""Synthetic stand-ins for the four benchmarks, generated in memory so the CPU presets and the tests run without
the real data. Each has the real dataset's item format and a learnable signal; none claims to resemble the data.

* MTAN (NYUv2 / Cityscapes): smooth random RGB; classes, depth and normals are functions of the colours, with an
  unlabelled band (255), invalid depth (0) and invalid normals (all zero) in the first rows.
* CelebA: "attribute k" is whether the mean of one colour channel over the k-th horizontal stripe is above ½.
* MultiMNIST: one fixed random 28×28 glyph per digit class, with pixel noise, overlaid by :class:`MultiMNISTDataset`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.data import DatasetInfo
from taskbalance.protocols.data.base import ProtocolDataset
from taskbalance.protocols.data.mtan import MTANLayout
from taskbalance.protocols.data.multimnist import DIGIT, MultiMNISTDataset


class TensorItems(ProtocolDataset):
    """Items from stacked tensors: ``image`` N×C×H×W and one N×… tensor per task."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], info: DatasetInfo) -> None:
        self.tensors = dict(tensors)
        self.info = info

    def __len__(self) -> int:
        return len(self.tensors["image"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {key: value[index] for key, value in self.tensors.items()}
        item["meta"] = {"id": str(index % len(self)), "scene": "", "view": 0}
        return item


def _smooth_images(count: int, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(count, 3, max(size[0] // 8, 2), max(size[1] // 8, 2), generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=True)


def standin_mtan(layout: MTANLayout, count: int, resolution: tuple[int, int], seed: int = 0) -> TensorItems:
    """``count`` items with ``layout``'s tasks at ``resolution`` (H, W multiples of 32 for the SegNets)."""
    generator = torch.Generator().manual_seed(seed)
    images = _smooth_images(count, resolution, generator)
    tensors: dict[str, torch.Tensor] = {"image": images}
    band = max(resolution[0] // 16, 1)
    if "semseg" in layout.tasks:
        semseg = (images[:, 0] * layout.num_classes).long().clamp_(max=layout.num_classes - 1)
        semseg[:, :band] = IGNORE_INDEX
        tensors["semseg"] = semseg
    if "depth" in layout.tasks:
        depth = 1.0 + 4.0 * images[:, 1:2]
        depth[:, :, :band] = 0.0
        tensors["depth"] = depth
    if "normals" in layout.tasks:
        normals = F.normalize(
            torch.stack([images[:, 2] - 0.5, images[:, 0] - 0.5, torch.ones_like(images[:, 0])], 1), dim=1
        )
        normals[:, :, :band] = 0.0
        tensors["normals"] = normals
    info = DatasetInfo(
        f"{layout.name}-standin", layout.tasks, {"semseg": layout.num_classes}, 0.0, False, {"seed": seed}
    )
    return TensorItems(tensors, info)


def standin_celeba(count: int, attributes: int = 8, size: int = 32, seed: int = 0) -> TensorItems:
    """``count`` items with tasks ``attr_0 … attr_{attributes−1}`` (0/1 floats) on ``size``×``size`` images."""
    generator = torch.Generator().manual_seed(seed)
    images = _smooth_images(count, (size, size), generator)
    stripes = torch.tensor_split(torch.arange(size), attributes)
    tensors: dict[str, torch.Tensor] = {"image": images}
    names = tuple(f"attr_{k}" for k in range(attributes))
    for k, rows in enumerate(stripes):
        tensors[names[k]] = (images[:, k % 3, rows].mean(dim=(1, 2)) > 0.5).float()
    return TensorItems(tensors, DatasetInfo("celeba-standin", names, {}, 0.0, True, {"seed": seed}))


def standin_multimnist(count: int, seed: int = 0) -> MultiMNISTDataset:
    """``count`` MultiMNIST examples overlaid from noisy per-class random glyphs."""
    rng = np.random.default_rng(seed)
    glyphs = (rng.random((10, DIGIT, DIGIT)) > 0.6) * 255.0
    labels = rng.integers(0, 10, size=count)
    noisy = glyphs[labels] * (rng.random((count, DIGIT, DIGIT)) > 0.1)
    return MultiMNISTDataset(noisy.astype(np.uint8), labels, seed=seed, name="multimnist-standin")
