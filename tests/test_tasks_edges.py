"""Edge metrics: the approximate training-time F-score by hand, and the exact odsF against pyEdgeEval itself."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from taskbalance.tasks import EmptyMeterError, build_task
from taskbalance.tasks.metrics.edge_ods import edge_thresholds, ods_f

LOGIT_OFF = -20.0  # σ ≈ 2e-9: below every threshold


def prob_logits(values: dict[tuple[int, int], float], size: int = 5) -> torch.Tensor:
    out = torch.full((1, 1, size, size), LOGIT_OFF, dtype=torch.float64)
    for (i, j), p in values.items():
        out[0, 0, i, j] = torch.logit(torch.tensor(p, dtype=torch.float64))
    return out


def edge_label(pixels: list[tuple[int, int]], size: int = 5, ignored: tuple = ()) -> torch.Tensor:
    out = torch.zeros(1, 1, size, size, dtype=torch.float64)
    for i, j in pixels:
        out[0, 0, i, j] = 1.0
    for i, j in ignored:
        out[0, 0, i, j] = 255.0
    return out


def approx_f(pred, target) -> float:
    meter = build_task("edge", max_dist=0.1).meter()  # radius round(0.1·√50) = 1 pixel on 5×5
    meter.update(pred, target)
    return meter.compute()["approx_F"]


def test_approx_f_hand_computed():
    pred = prob_logits({(2, 3): 0.9, (0, 0): 0.8})
    gt = edge_label([(2, 2), (4, 4)])
    # t < 0.8: P = 1/2 ((2,3) is next to an edge, (0,0) is not), R = 1/2 → F = 1/2
    # 0.8 ≤ t < 0.9: P = 1, R = 1/2 → F = 2/3; t ≥ 0.9: nothing predicted
    assert approx_f(pred, gt) == pytest.approx(100 * 2 / 3)
    # ignoring the GT pixel at (4,4): recall 1 for t < 0.9, precision 1 once (0,0) drops out → F = 1
    assert approx_f(pred, edge_label([(2, 2)], ignored=[(4, 4)])) == pytest.approx(100.0)


def test_approx_f_perfect_constant_and_empty():
    gt = edge_label([(2, 2), (4, 4)])
    assert approx_f(prob_logits({(2, 2): 0.99, (4, 4): 0.99}), gt) == pytest.approx(100.0)
    # constant 0.5: for t < 0.5 every pixel is predicted; 12 of 25 lie within 1 px of an edge
    # (9 around (2,2), 4 around the corner (4,4), sharing (3,3)); R = 1
    constant = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    assert approx_f(constant, gt) == pytest.approx(100 * 2 * (12 / 25) / (12 / 25 + 1))
    with pytest.raises(EmptyMeterError, match="task 'edge'"):
        approx_f(constant, edge_label([], ignored=[(0, 0)]))


def test_thresholds_of_the_reference_protocols():
    assert np.allclose(edge_thresholds(99), np.arange(1, 100) / 100)
    t101 = edge_thresholds(101)
    assert (
        t101.size == 101 and t101[0] == 0.001 and t101[-1] == 0.999 and np.allclose(t101[1:-1], np.arange(1, 100) / 100)
    )


def _generated_maps(seed: int = 0, count: int = 3, shape: tuple[int, int] = (32, 48)):
    """Thin GT edge maps (random straight segments) and noisy, shifted, blurred probability maps (uint8)."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for k in range(count):
        gt = np.zeros(shape, dtype=np.uint8)
        for _ in range(3):
            if rng.random() < 0.5:
                gt[rng.integers(4, shape[0] - 4), rng.integers(0, 15) : rng.integers(25, shape[1])] = 1
            else:
                gt[rng.integers(0, 10) : rng.integers(18, shape[0]), rng.integers(4, shape[1] - 4)] = 1
        shifted = np.roll(gt, rng.integers(-2, 3), axis=int(rng.integers(0, 2))).astype(np.float64)
        soft = gaussian_filter(shifted, 1.0) * 2.5 + 0.35 * rng.random(shape) ** 3
        if k == count - 1:
            gt[:] = 0  # an image without edges: only false positives
        preds.append(np.round(np.clip(soft, 0, 1) * 255).astype(np.uint8))
        gts.append(gt)
    preds.append(np.full(shape, 128, dtype=np.uint8))  # a constant prediction
    gts.append(gts[0].copy())
    return preds, gts


def _pyedgeeval_counts(preds, gts, thresholds, max_dist, nms):
    from pyEdgeEval.common.binary_label.evaluate_boundaries import evaluate_boundaries_threshold
    from pyEdgeEval.preprocess import binary_thin

    total = np.zeros((4, thresholds.size))
    for p, g in zip(preds, gts):
        # pyEdgeEval binarises with ≥ t, the SEISM protocol with > t: shift its thresholds by less than 1/255.
        # The protocol thins the GT boundary map as well (BDET ``edgesEvalImg``); pyEdgeEval expects it thin.
        cnt_r, sum_r, cnt_p, sum_p = evaluate_boundaries_threshold(
            thresholds + 1e-9, p.astype(np.float64) / 255, binary_thin(g.astype(bool)), max_dist=max_dist,
            apply_thinning=True, apply_nms=nms,
        )
        total += np.stack([cnt_r, sum_r, cnt_p, sum_p])
    return total


def assert_counts_close(ours: np.ndarray, reference: np.ndarray) -> None:
    """GT totals (sumR) exactly; the rest up to the BSDS matcher's random tie-breaking and, after NMS, values that
    tie with a threshold (> t against ≥ t + 1e-9): within 2% or 2 pixels."""
    np.testing.assert_array_equal(ours[1], reference[1])
    np.testing.assert_allclose(ours[[0, 2, 3]], reference[[0, 2, 3]], rtol=0.02, atol=2)


@pytest.mark.parametrize(("nms", "count", "max_dist"), [(False, 99, 0.011), (True, 101, 0.0075)])
def test_odsf_matches_pyedgeeval_evaluation(nms, count, max_dist):
    preds, gts = _generated_maps()
    ours = ods_f(preds, gts, max_dist=max_dist, thresholds=count, nms=nms, workers=1, progress=False)
    reference = _pyedgeeval_counts(preds, gts, edge_thresholds(count), max_dist, nms)
    assert_counts_close(ours.counts, reference)
    cnt_r, sum_r, cnt_p, sum_p = reference
    recall, precision = cnt_r / sum_r, np.divide(cnt_p, sum_p, out=np.zeros_like(cnt_p), where=sum_p > 0)
    f = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(recall), where=precision + recall > 0)
    assert ours.ods_f == pytest.approx(f.max(), abs=0.005)
    assert 0.3 < ours.ods_f < 1.0  # the generated maps are neither trivial nor hopeless


def test_odsf_process_pool_gives_the_same_counts():
    preds, gts = _generated_maps(seed=1, count=2)
    serial = ods_f(preds, gts, max_dist=0.011, workers=1, progress=False)
    parallel = ods_f(np.stack(preds), np.stack(gts), max_dist=0.011, workers=2, progress=False)
    assert_counts_close(parallel.counts, serial.counts)


def test_exact_meter_perfect_prediction_and_ignored_padding():
    gt = np.zeros((1, 1, 32, 40))
    gt[0, 0, 10, 5:35] = 1
    gt[0, 0, 5:25, 20] = 1
    target = torch.from_numpy(gt)
    target[..., 30:, :] = 255.0  # padding
    logits = torch.where(target == 1, 10.0, -10.0).double()
    logits[..., 30:, :] = 10.0  # confident "edges" in the padding must not count
    meter = build_task("edge", exact_odsf=True, max_dist=0.011, workers=1, progress=False).meter()
    meter.update(logits, target)
    assert meter.compute()["odsF"] == pytest.approx(100.0)


def test_odsf_rejects_bad_input():
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        ods_f([np.full((4, 4), 1.5)], [np.zeros((4, 4))], max_dist=0.01, workers=1, progress=False)
    with pytest.raises(ValueError, match="shape"):
        ods_f([np.zeros((4, 4))], [np.zeros((4, 5))], max_dist=0.01, workers=1, progress=False)
