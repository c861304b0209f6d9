"""The paper's data-quality setting: noisy training labels (Section V-E).

"For semantic segmentation, for each sample, we randomly select five categories (or keep them all if there
are less than five semantic labels) and change the pixels of the selected categories to the wrong category
at a rate of 0.5. For depth and surface normal, we add gaussian noise."

Reading used here: for each selected category one wrong category is drawn, and each of its pixels is
relabelled to it with probability ``seg_flip_rate``. Depth gets additive Gaussian noise (metres, kept
positive on valid pixels), normals get Gaussian noise and are renormalised; invalid pixels stay invalid.
The noise of a sample is a function of (seed, sample id): every epoch sees the same noisy labels, as with
a noisy dataset on disk.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.data.rng import mix_seed
from taskbalance.data.transforms import Sample

__all__ = ["LabelNoise", "apply_label_noise"]


class LabelNoise(BaseModel):
    """Strength of the label noise (defaults: the paper's 5 categories at rate 0.5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seg_categories: int = Field(5, ge=1)
    seg_flip_rate: float = Field(0.5, ge=0.0, le=1.0)
    depth_std: float = Field(0.1, ge=0.0, description="metres")
    normals_std: float = Field(0.1, ge=0.0)
    seed: int = 0


def _flip_categories(
    labels: torch.Tensor, num_classes: int, noise: LabelNoise, generator: torch.Generator
) -> torch.Tensor:
    present = labels[labels != IGNORE_INDEX].unique()
    if num_classes < 2 or len(present) == 0:
        return labels
    chosen = present[torch.randperm(len(present), generator=generator)[: noise.seg_categories]]
    out = labels.clone()
    for category in chosen.tolist():
        wrong = int(torch.randint(0, num_classes - 1, (), generator=generator))
        wrong += wrong >= category
        flip = (labels == category) & (torch.rand(labels.shape, generator=generator) < noise.seg_flip_rate)
        out[flip] = wrong
    return out


def apply_label_noise(sample: Sample, noise: LabelNoise, num_classes: int) -> Sample:
    """A copy of ``sample`` with noisy ``semseg``, ``depth`` and ``normals`` (other tasks untouched)."""
    generator = torch.Generator().manual_seed(mix_seed(noise.seed, sample["meta"]["id"]))
    out = dict(sample)
    if "semseg" in sample:
        out["semseg"] = _flip_categories(sample["semseg"], num_classes, noise, generator)
    if "depth" in sample and noise.depth_std > 0:
        depth = sample["depth"]
        noisy = depth + noise.depth_std * torch.randn(depth.shape, generator=generator)
        out["depth"] = torch.where(depth > 0, noisy.clamp_min(1e-3), depth)
    if "normals" in sample and noise.normals_std > 0:
        normals = sample["normals"]
        valid = normals.square().sum(0, keepdim=True) > 0
        noisy = normals + noise.normals_std * torch.randn(normals.shape, generator=generator)
        noisy = noisy / noisy.square().sum(0, keepdim=True).sqrt().clamp_min(1e-6)
        out["normals"] = torch.where(valid, noisy, normals)
    return out
