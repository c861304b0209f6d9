"""`taskbalance doctor` on a real 60-step uniform quick run (synthetic scenes, small images): it names the
imbalance it sees and a registered method, with the numbers behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskbalance.balancers.registry import available
from taskbalance.cli.main import app
from taskbalance.doctor import rules

SMALL = ["optim.iterations=60", "optim.eval_every=60", "diagnostics.every=5", "data.options.num_scenes=2",
         "data.options.resolution=[24,32]"]


@pytest.mark.slow
def test_doctor_on_a_60_step_uniform_quick_run(tmp_path: Path):
    run = tmp_path / "uniform"
    overrides = [arg for setting in SMALL for arg in ("--set", setting)]
    trained = CliRunner().invoke(app, ["train", "quick", *overrides, "--out", str(run), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(app, ["doctor", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rec = report["recommendation"]
    assert report["records"] == 12 and report["source"] == "last_layer" and report["last_step"] == 60
    assert rec["method"] in available() and rec["method"] in rules.RULE_METHODS
    # the synthetic scenes' edge loss gives a last-layer gradient tens of times smaller than the largest task's
    assert rec["verdict"] == "norm-dominated" and rec["method"] == "avgnorm"
    assert report["norm_ratio"]["smallest"] == "edge" and report["norm_ratio"]["median"] > rules.NORM_RATIO_MARKED
    assert "edge" in report["at_risk"]
    assert f"= {report['norm_ratio']['median']:.3g} (median over 12 logged steps" in rec["reason"]
    text = (run / "doctor.md").read_text()
    assert "**Recommendation: avgnorm [norm-dominated]" in text and (run / "doctor.png").is_file()
