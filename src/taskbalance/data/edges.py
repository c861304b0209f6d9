"""Edge maps from label maps.

Two rules: :func:`label_boundaries` (one pixel wide, marked on the top/left side of each boundary; the
synthetic renderer's edges) and :func:`context_edges` (the PASCAL-Context edge labels of the reference loaders).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

__all__ = ["context_edges", "label_boundaries", "neighbour_mask", "thin"]

#: Weights that code a pixel's 8-neighbourhood as a LUT index for ``G123_LUT``/``G123P_LUT`` (skimage's mask).
_NEIGHBOUR_WEIGHTS = np.array([[8, 4, 2], [16, 0, 1], [32, 64, 128]], dtype=np.uint8)


def neighbour_mask(values: Tensor, differs: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Bool mask (same shape as ``values``, last two dims H×W) of pixels that ``differ`` from their right or
    lower neighbour. Marking one side only keeps boundaries one pixel thin."""
    mask = torch.zeros(values.shape, dtype=torch.bool)
    mask[..., :, :-1] |= differs(values[..., :, :-1], values[..., :, 1:])
    mask[..., :-1, :] |= differs(values[..., :-1, :], values[..., 1:, :])
    return mask


def label_boundaries(labels: Tensor) -> Tensor:
    """Pixels whose label differs from the right or lower neighbour (the synthetic scenes' class edges)."""
    return neighbour_mask(labels, torch.ne)


def thin(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``skimage.morphology.thin`` (Guo–Hall two-subiteration thinning, as MATLAB ``bwmorph(…, 'thin', Inf)``)
    of an H×W bool mask, with pyEdgeEval's copy of skimage's lookup tables.

    Both subiterations run until a whole iteration deletes nothing, as skimage does; pyEdgeEval's
    ``binary_thin`` stops as soon as one subiteration deletes nothing and can leave pixels skimage removes
    (and its ``bwmorph_thin`` fails on NumPy ≥ 2.4)."""
    from pyEdgeEval.preprocess.thin.bwmorph_thin import G123_LUT, G123P_LUT  # here: the synthetic scenes need neither
    from scipy import ndimage

    skeleton = mask.astype(np.uint8)
    while True:
        before = int(skeleton.sum())
        for lut in (G123_LUT, G123P_LUT):
            skeleton[lut[ndimage.correlate(skeleton, _NEIGHBOUR_WEIGHTS, mode="constant")]] = 0
        if int(skeleton.sum()) == before:
            return skeleton.astype(bool)


def context_edges(label_map: Tensor) -> Tensor:
    """Edge label (float H×W, 1 on edges, 0 elsewhere) of an H×W PASCAL-Context ``LabelMap``, as the reference
    loaders derive it (dense_prediction.md §1.2; ASTMT/MTLP ``PASCALContext._load_edge``)::

        thin(np.abs(cv2.Laplacian(LabelMap, cv2.CV_64F)) > 0)

    i.e. cv2's default ``ksize=1`` Laplacian (kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``, reflect-101 border)
    of the label *values* in float64, non-zero marks the pixels on both sides of each boundary, and
    ``skimage.morphology.thin`` (:func:`thin`) takes that band to one pixel. Being a Laplacian of the values, a
    pixel whose neighbours' labels sum to four times its own (e.g. the middle of a 1, 2, 3 ramp) is no edge."""
    if label_map.ndim != 2:
        raise ValueError(f"a label map must be H×W, got shape {tuple(label_map.shape)}")
    import cv2

    laplacian = cv2.Laplacian(label_map.numpy().astype(np.float64), cv2.CV_64F)
    return torch.from_numpy(thin(laplacian != 0)).float()
