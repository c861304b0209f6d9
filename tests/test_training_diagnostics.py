"""Diagnostic records and the imbalance summary, checked against quantities computed from explicit gradients."""

import math

import pytest
import torch

from taskbalance.balancers import create
from taskbalance.records import DiagnosticsRecord
from taskbalance.training.diagnostics import diagnostic_record, format_summary, imbalance_summary, pair_key


def _step(weights_method: str = "uniform"):
    torch.manual_seed(0)
    shared = torch.nn.Linear(4, 3)
    heads = {"semseg": torch.nn.Linear(3, 1), "depth": torch.nn.Linear(3, 1), "edge": torch.nn.Linear(3, 1)}
    x = torch.randn(8, 4)
    z = shared(x)
    scales = {"semseg": 1.0, "depth": 10.0, "edge": 0.1}
    losses = {t: scales[t] * head(z).pow(2).mean() for t, head in heads.items()}
    grads = {
        t: torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(shared.parameters()), retain_graph=True)])
        for t, loss in losses.items()
    }
    balancer = create(weights_method, tasks=list(heads), shared=shared, last_layer=shared)
    result = balancer.backward(losses, diagnose="last_layer")
    return result, grads


def test_record_matches_explicit_gradients():
    result, grads = _step()
    record = diagnostic_record(12, result).to_json()
    assert record["step"] == 12 and record["source"] == "last_layer"
    combined = sum(grads.values())
    for task, g in grads.items():
        assert record["grad_norms"][task] == pytest.approx(float(g.norm()), rel=1e-5)
        assert record["cos_to_update"][task] == pytest.approx(
            float(torch.cosine_similarity(g, combined, dim=0)), abs=1e-5
        )
    key = pair_key("semseg", "depth")
    assert record["cos"][key] == pytest.approx(
        float(torch.cosine_similarity(grads["semseg"], grads["depth"], dim=0)), abs=1e-5
    )
    assert record["dot"][key] == pytest.approx(float(grads["semseg"] @ grads["depth"]), rel=1e-4)
    assert record["weights"] == {"semseg": 1.0, "depth": 1.0, "edge": 1.0}


def test_weighted_norms_and_avgnorm_balance():
    result, grads = _step("avgnorm")
    record = diagnostic_record(1, result)
    for task, g in grads.items():
        assert record.weighted_grad_norms[task] == pytest.approx(result.weights[task] * float(g.norm()), rel=1e-5)
    summary = imbalance_summary([record])
    assert summary["norm_ratio"] == pytest.approx(1.0, rel=1e-4)  # AvgNorm equalises every contribution
    norms = [float(g.norm()) for g in grads.values()]
    assert summary["raw_norm_ratio"] == pytest.approx(max(norms) / min(norms), rel=1e-4)


def _record(step, norms, cosines):
    return DiagnosticsRecord(step=step, source="last_layer", tasks=list(norms), grad_norms=norms,
                             weighted_grad_norms=norms, cos_to_update=cosines, weights={t: 1.0 for t in norms})


def test_imbalance_summary_ratios_and_spreads():
    records = [_record(s, {"a": 1.0 * s, "b": 2.0}, {"a": 0.9, "b": 0.1 * s}) for s in range(1, 9)]
    summary = imbalance_summary(records, late_fraction=0.25)
    ratios = [max(s, 2.0) / min(s, 2.0) for s in range(1, 9)]
    spreads = [abs(0.9 - 0.1 * s) for s in range(1, 9)]
    assert summary["steps"] == 8
    assert summary["norm_ratio"] == pytest.approx(sum(ratios) / 8)
    assert summary["norm_ratio_late"] == pytest.approx(sum(ratios[-2:]) / 2)
    assert summary["cos_spread_late"] == pytest.approx(sum(spreads[-2:]) / 2)
    assert summary["grad_norm_late"]["a"] == pytest.approx(7.5)
    text = format_summary(summary)
    assert "largest/smallest" in text and "last 25%" in text


def test_summary_without_records_and_with_zero_norm():
    assert imbalance_summary([]) == {"steps": 0}
    assert "diagnostics.every" in format_summary({"steps": 0})
    summary = imbalance_summary([_record(1, {"a": 0.0, "b": 2.0}, {"a": 0.0, "b": 1.0})])
    assert math.isfinite(summary["norm_ratio"])  # zero norms are ignored as the denominator
