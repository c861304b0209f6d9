"""Exact edge odsF: the BSDS/SEISM benchmark protocol on top of pyEdgeEval's ports of the MATLAB kernels.

Protocol (SEISM ``read_one_cont_png.m`` / ``edgesEvalImg.m`` / ``gather_measure.m`` / ``general_ods.m``, and the
BDET packaging of it used by InvPT/ATRC), per image and threshold ``t``:

1. the probability map ``E`` is the uint8-quantised sigmoid output divided by 255 (``im2double(imread(png))``);
2. optionally NMS (``edgesNmsMex(E, O, 1, 5, 1.01)`` after ``convTri`` and gradient orientation; pyEdgeEval's
   ``fast_nms``): on in BDET, off in MTLP's SEISM fork;
3. binarise ``E > t`` and thin it (``bwmorph(…, 'thin', Inf)``; pyEdgeEval's ``binary_thin``);
4. match it to the ground-truth boundary map ``G`` with ``correspondPixels(E_t, G, maxDist)`` (BSDS min-cost
   assignment; ``maxDist`` is a fraction of the image diagonal: 0.011 for NYUD, 0.0075 for PASCAL). ``G`` is the
   0/1 edge label, thinned like the prediction (BDET's ``edgesEvalImg``); turning segmentations into boundary
   maps (SEISM ``seg2bmap``) is the dataset's job;
5. count ``cntR`` (matched GT pixels), ``sumR`` (GT pixels), ``cntP`` (matched predicted pixels), ``sumP``.

ODS: sum the four counts over *all images* per threshold, ``P = cntP/sumP``, ``R = cntR/sumR`` (0 where the
denominator is 0), ``F = 2PR/(P + R)``, and take the maximum over thresholds, without interpolation (SEISM's
``general_ods``; pyEdgeEval's own ODS interpolates between thresholds). Thresholds: 99 (0.01…0.99, MTLP) or 101
(0.001, 0.01…0.99, 0.999, BDET's ``HED.txt``). Pixels labelled 255 (padding) are removed from both maps.
The matcher samples randomly, so repeated runs can differ by about ±0.001 in F (documented by pyEdgeEval).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pyEdgeEval._lib import correspond_pixels
from pyEdgeEval.preprocess import binary_thin, fast_nms
from rich.progress import Progress

from taskbalance.conventions import IGNORE_INDEX

#: Supported threshold counts: 99 (MTLP) and 101 (BDET).
THRESHOLD_COUNTS: tuple[int, ...] = (99, 101)


def edge_thresholds(count: int) -> NDArray[np.float64]:
    """The binarisation thresholds of the reference protocols: 99 → 0.01…0.99; 101 → 0.001, 0.01…0.99, 0.999."""
    inner = np.arange(1, 100, dtype=np.float64) / 100.0
    if count == 99:
        return inner
    if count == 101:
        return np.concatenate([[0.001], inner, [0.999]])
    raise ValueError(f"edge odsF uses 99 or 101 thresholds, got {count}")


@dataclass(frozen=True)
class ODSResult:
    """Outcome of :func:`ods_f`. ``counts`` is 4×T: rows cntR, sumR, cntP, sumP summed over images."""

    ods_f: float
    threshold: float
    precision: float
    recall: float
    thresholds: NDArray[np.float64]
    counts: NDArray[np.float64]


def _probability(prediction: NDArray) -> NDArray[np.float64]:
    if prediction.dtype == np.uint8:
        return prediction.astype(np.float64) / 255.0
    if not np.issubdtype(prediction.dtype, np.floating):
        raise ValueError(f"edge predictions must be uint8 or float probabilities, got dtype {prediction.dtype}")
    if not np.all((prediction >= 0.0) & (prediction <= 1.0)):  # also rejects NaN
        raise ValueError("edge predictions must be probabilities in [0, 1] (apply the sigmoid first)")
    return prediction.astype(np.float64)


def image_counts(
    prediction: NDArray, label: NDArray, thresholds: NDArray[np.float64], max_dist: float, nms: bool
) -> NDArray[np.float64]:
    """The 4×T BSDS counts (cntR, sumR, cntP, sumP) of one H×W probability map against its H×W 0/1/255 label."""
    ignored = label == IGNORE_INDEX
    probability = np.where(ignored, 0.0, _probability(prediction))
    if nms:
        probability = np.where(ignored, 0.0, fast_nms(probability, r=1, s=5, m=1.01))
    ground_truth = binary_thin(label == 1)
    n_gt = float(ground_truth.sum())
    counts = np.zeros((4, thresholds.size), dtype=np.float64)
    counts[1] = n_gt
    for k, t in enumerate(thresholds):
        edges = binary_thin(probability > t)
        counts[3, k] = edges.sum()
        if n_gt and counts[3, k]:
            match_pred, match_gt, _, _ = correspond_pixels(edges, ground_truth, max_dist=max_dist)
            counts[0, k] = (match_gt > 0).sum()
            counts[2, k] = (match_pred > 0).sum()
    return counts


def _split(maps: NDArray | Sequence[NDArray], what: str) -> list[NDArray]:
    items = list(maps)
    for i, m in enumerate(items):
        if np.ndim(m) != 2:
            raise ValueError(f"edge {what} {i} must be an H×W map, got shape {np.shape(m)}")
    return [np.asarray(m) for m in items]


def ods_f(
    predictions: NDArray | Sequence[NDArray],
    labels: NDArray | Sequence[NDArray],
    *,
    max_dist: float,
    thresholds: int = 99,
    nms: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> ODSResult:
    """Dataset-level optimal F-measure (odsF, in [0, 1]) of edge probability maps, by the protocol of this module.

    Args:
        predictions: N×H×W (or a sequence of H×W maps, sizes may differ) probabilities in [0, 1], or uint8 maps
            read as value/255.
        labels: the matching 0/1 ground-truth boundary maps (255: ignored pixel).
        max_dist: matching tolerance as a fraction of the image diagonal (0.011 NYUD, 0.0075 PASCAL).
        thresholds: 99 or 101 (see :func:`edge_thresholds`).
        nms: apply the structured-edges NMS before thresholding (BDET: on; MTLP: off).
        workers: processes evaluating images in parallel (None: all CPUs; 1: in this process).
        progress: show a rich progress bar.
    """
    preds, gts = _split(predictions, "prediction"), _split(labels, "label")
    if len(preds) != len(gts) or not preds:
        raise ValueError(
            f"need the same non-zero number of edge predictions and labels, got {len(preds)} and {len(gts)}"
        )
    for i, (p, g) in enumerate(zip(preds, gts)):
        if p.shape != g.shape:
            raise ValueError(f"edge prediction {i} has shape {p.shape} but its label has shape {g.shape}")
    if max_dist <= 0:
        raise ValueError(f"max_dist must be positive, got {max_dist}")
    levels = edge_thresholds(thresholds)
    total = np.zeros((4, levels.size), dtype=np.float64)
    workers = (os.cpu_count() or 1) if workers is None else workers
    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task("edge odsF (BSDS matching)", total=len(preds))
        if workers <= 1:
            for p, g in zip(preds, gts):
                total += image_counts(p, g, levels, max_dist, nms)
                bar.advance(job)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(preds))) as pool:
                futures = [pool.submit(image_counts, p, g, levels, max_dist, nms) for p, g in zip(preds, gts)]
                for future in as_completed(futures):
                    total += future.result()
                    bar.advance(job)
    cnt_r, sum_r, cnt_p, sum_p = total
    recall = np.divide(cnt_r, sum_r, out=np.zeros_like(cnt_r), where=sum_r > 0)
    precision = np.divide(cnt_p, sum_p, out=np.zeros_like(cnt_p), where=sum_p > 0)
    f = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(recall), where=precision + recall > 0)
    best = int(np.argmax(f))
    return ODSResult(
        ods_f=float(f[best]),
        threshold=float(levels[best]),
        precision=float(precision[best]),
        recall=float(recall[best]),
        thresholds=levels,
        counts=total,
    )
