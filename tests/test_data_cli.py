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
        result = runner.invoke(app, ["data", "export", "synthetic", "--layout", "nyudv2", "--out", str(out),
                                     "--num-scenes", "1", "--views-per-scene", "2", "--resolution", "24x32"])
        assert result.exit_code == 0, result.output
        assert (out / "gt_sets" / "train.txt").read_text().split() == ["train_000_000", "train_000_001"]
        assert sorted(p.name for p in (out / "images").iterdir()) == [
            "test_000_000.png",
            "test_000_001.png",
            "train_000_000.png",
            "train_000_001.png",
        ]

        result = runner.invoke(app, ["data", "check", str(out), "--dataset", "nyud"])
        assert result.exit_code == 0, result.output
        assert "4 samples checked" in result.output and "NYUDv2" in result.output

        (out / "edge" / "test_000_001.png").unlink()
        result = runner.invoke(app, ["data", "check", str(out), "--dataset", "nyud"])
        assert result.exit_code == 1
        assert "test_000_001.png" in result.output and "1 problem" in result.output

        result = runner.invoke(app, ["data", "export", "synthetic", "--layout", "nyud", "--out", str(out)])
        assert result.exit_code == 1 and "not an empty folder" in result.output

        result = runner.invoke(app, ["data", "info", "nyud", "--split", "test", "--root", str(out)])
        assert result.exit_code == 1 and "test_000_001.png" in result.output  # missing file named at load
    finally:
        torch.set_num_threads(threads)


def test_bad_arguments(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nowhere"), "--dataset", "nyud"])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["data", "export", "synthetic", "--layout", "coco", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "unknown export layout" in result.output
    result = runner.invoke(
        app, ["data", "export", "synthetic", "--layout", "nyud", "--out", str(tmp_path / "y"), "--resolution", "big"]
    )
    assert result.exit_code != 0 and "HxW" in result.output


def test_info_describes_the_synthetic_split_without_rendering(monkeypatch):
    import taskbalance.data.synthetic.dataset as synthetic

    def no_rendering(*args, **kwargs):
        raise AssertionError("data info rendered the scenes")

    monkeypatch.setattr(synthetic, "render_split", no_rendering)
    result = runner.invoke(app, ["data", "info", "synthetic", "--split", "test"])
    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.output.splitlines()
        if line.count("│") == 3
    }
    assert rows["items"] == str(8 * 16)  # 8 test scenes of 16 views
    assert rows["name"] == "synthetic"


def test_describe_synthetic_matches_the_built_dataset():
    from taskbalance.data import build_dataset
    from taskbalance.data.describe import describe_dataset

    options = {"num_scenes": 3, "views_per_scene": 4, "resolution": (16, 20), "scans_per_scene": 0.5, "scene_subset": 2}
    built = build_dataset("synthetic", "train", **options)
    info, items = describe_dataset("synthetic", "train", **options)
    assert (info, items) == (built.info, len(built)) and items == 2 * 2


def test_export_reports_progress_before_rendering_and_after_every_sample(tmp_path):
    from taskbalance.data.export import export_synthetic

    calls: list[tuple[str, int, int]] = []
    export_synthetic(tmp_path / "out", "nyud", progress=lambda stage, done, total: calls.append((stage, done, total)),
                     num_scenes=1, views_per_scene=2, resolution=(16, 20))
    assert calls == [("render train", 0, 4), ("write train", 1, 4), ("write train", 2, 4),
                     ("render test", 2, 4), ("write test", 3, 4), ("write test", 4, 4)]


def test_the_light_layout_names_match_the_writers_and_readers():
    from taskbalance.data.check import CHECKABLE
    from taskbalance.data.export import _WRITERS
    from taskbalance.data.layouts import CHECKABLE_DATASETS, EXPORT_LAYOUTS

    assert tuple(CHECKABLE) == CHECKABLE_DATASETS and tuple(_WRITERS) == EXPORT_LAYOUTS
