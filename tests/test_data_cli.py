"""``taskbalance data export / check / info`` through the real command line app."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from taskbalance.cli.main import app

runner = CliRunner()


def test_export_then_check_then_info(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "nyud"
        result = runner.invoke(app, ["data", "export", "synthetic", "--layout", "nyudv2", "--out", str(out), "--num-scenes", "1", "--views-per-scene", "2", "--resolution", "24x32"])
        assert result.exit_code == 0, result.output
        assert (out / "gt_sets" / "train.txt").read_text().split() == ["train_000_000", "train_000_001"]
        assert sorted(p.name for p in (out / "images").iterdir()) == ["test_000_000.png", "test_000_001.png", "train_000_000.png", "train_000_001.png"]

        result = runner.invoke(app, ["data", "check", str(out), "--dataset", "nyud"])
        assert result.exit_code == 0, result.output
        assert "4 samples checked" in result.output and "NYUDv2" in result.output

        (out / "edge" / "test_000_001.png").unlink()
        result = runner.invoke(app, ["data", "check", str(out), "--dataset", "nyud"])
        assert result.exit_code == 1
        assert "test_000_001.png" in result.output and "1 problem" in result.output

        result = runner.invoke(app, ["data", "export", "synthetic", "--layout", "nyud", "--out", str(out)])
        assert result.exit_code == 2 and "not an empty folder" in result.output

        result = runner.invoke(app, ["data", "info", "nyud", "--split", "test", "--root", str(out)])
        assert result.exit_code == 2 and "test_000_001.png" in result.output  # missing file named at load
    finally:
        torch.set_num_threads(threads)


def test_bad_arguments(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nowhere"), "--dataset", "nyud"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["data", "export", "synthetic", "--layout", "coco", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown export layout" in result.output
    result = runner.invoke(app, ["data", "export", "synthetic", "--layout", "nyud", "--out", str(tmp_path / "y"), "--resolution", "big"])
    assert result.exit_code != 0 and "HxW" in result.output
