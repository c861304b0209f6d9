"""The training augmentation of the MTAN-protocol code: ``RandomScaleCrop`` then a horizontal flip.

``RandomScaleCrop`` (credited to Jialong Wu, ``lorenmt/mtan`` issue #34; CAGrad / Nash-MTL ``create_dataset.py``):
pick a scale ``s`` from {1.0, 1.2, 1.5}, crop a random ``⌊H/s⌋×⌊W/s⌋`` window, resize it back to H×W (image and
normals bilinear with ``align_corners=True``, labels and depth nearest) and divide depth by ``s``. Then, with
probability ½, flip everything horizontally and negate the normals' x component.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Generator

#: The scales of ``RandomScaleCrop``.
SCALES: tuple[float, ...] = (1.0, 1.2, 1.5)


def _randint(low: int, high: int, generator: Generator) -> int:
    """Uniform integer in ``[low, high]`` (inclusive, like Python's ``random.randint``)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def mtan_scale_crop_flip(sample: dict[str, Any], generator: Generator) -> dict[str, Any]:
    """The augmented copy of a sample (image 3×H×W, optional ``semseg`` H×W, ``depth`` 1×H×W, ``normals`` 3×H×W)."""
    height, width = sample["image"].shape[-2:]
    scale = SCALES[_randint(0, len(SCALES) - 1, generator)]
    h, w = int(height / scale), int(width / scale)
    top, left = _randint(0, height - h, generator), _randint(0, width - w, generator)
    flip = bool(torch.rand(1, generator=generator) < 0.5)
    out = dict(sample)

    def crop(x: torch.Tensor, mode: str) -> torch.Tensor:
        window = x[None, :, top : top + h, left : left + w]
        if mode == "bilinear":
            return F.interpolate(window, size=(height, width), mode="bilinear", align_corners=True)[0]
        return F.interpolate(window, size=(height, width), mode="nearest")[0]

    out["image"] = crop(sample["image"], "bilinear")
    if "semseg" in sample:
        out["semseg"] = crop(sample["semseg"][None].float(), "nearest")[0].long()
    if "depth" in sample:
        out["depth"] = crop(sample["depth"], "nearest") / scale
    if "normals" in sample:
        out["normals"] = crop(sample["normals"], "bilinear")
    if flip:
        for key in ("image", "semseg", "depth", "normals"):
            if key in out:
                out[key] = out[key].flip(-1)
        if "normals" in out:
            out["normals"][0] = -out["normals"][0]
    return out
