"""Diagnostics figures from runs' diagnostics.jsonl, through the API and the `plot` command."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.plots import FIGURES, plot_runs
from taskbalance.plots.diagnostics import curves, window_means
from taskbalance.records import DiagnosticsRecord
from taskbalance.training.rundir import RunDir


def _fake_run(root: Path, scale: float, distance: bool = False) -> Path:
    log = RunDir(root).diagnostics
    for step in range(5, 105, 5):
        record = {"step": step, "source": "last_layer", "tasks": ["semseg", "depth", "edge"],
                  "weights": {"semseg": 1.0, "depth": 1.0, "edge": scale},
                  "grad_norms": {"semseg": 1.0 / step, "depth": 2.0 / step, "edge": scale / step},
                  "weighted_grad_norms": {"semseg": 1.0 / step, "depth": 2.0 / step, "edge": scale**2 / step},
                  "cos_to_update": {"semseg": 0.5, "depth": 0.4, "edge": 0.1 * scale},
                  "cos": {"semseg|depth": 0.1, "semseg|edge": -0.2, "depth|edge": 0.0},
                  "dot": {"semseg|depth": 1e-3, "semseg|edge": -1e-4, "depth|edge": 0.0}}
        if distance:
            record["feature_distance"] = {"semseg": 1.0 / step, "depth": 0.5, "edge": 0.2}
        log.append(record)
    return root


def test_window_means_average_and_skip_missing():
    xs, ys = window_means([1, 2, 3, 4, 5], [1.0, None, 3.0, 5.0, float("nan")], points=2)
    assert xs == [2.0, 4.0] and ys == [2.0, 5.0]


def test_curves_per_task_and_pair():
    records = [DiagnosticsRecord(step=1, tasks=["a", "b"], cos={"a|b": 0.5}),
               DiagnosticsRecord(step=2, tasks=["a", "b"], cos={"a|b": 0.7})]
    assert curves(records, "cos", points=10) == {"a|b": ([1.0, 2.0], [0.5, 0.7])}


def test_plot_runs_writes_every_logged_quantity(tmp_path: Path):
    runs = [_fake_run(tmp_path / "uniform", 1.0), _fake_run(tmp_path / "grid", 10.0, distance=True)]
    written = plot_runs(runs, tmp_path / "figs", points=5)
    assert sorted(p.stem for p in written) == sorted(stem for stem, _, _ in FIGURES.values())
    assert all(p.stat().st_size > 1000 for p in written)


def test_plot_command(tmp_path: Path):
    run = _fake_run(tmp_path / "uniform", 1.0)
    result = CliRunner().invoke(app, ["plot", str(run), "--out", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "figs" / "cos_to_update.png").is_file()
    assert not (tmp_path / "figs" / "feature_distance.png").exists()


def test_plot_command_without_diagnostics_fails_clearly(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "diagnostics" in result.output


def test_records_are_json_lines(tmp_path: Path):
    run = _fake_run(tmp_path / "r", 1.0)
    lines = (run / "diagnostics.jsonl").read_text().splitlines()
    assert len(lines) == 20 and json.loads(lines[0])["step"] == 5
    with pytest.raises(FileNotFoundError):
        plot_runs([tmp_path / "missing"], tmp_path / "f")


def test_run_labels_disambiguate_variants():
    from taskbalance.plots.diagnostics import run_labels

    paths = [Path("s/clean/uniform"), Path("s/noise/uniform"), Path("s/clean/avgnorm")]
    assert run_labels(paths) == ["clean/uniform", "noise/uniform", "avgnorm"]


def _weights_run(root: Path, weights: dict, every: int = 5, seed_shift: float = 0.0) -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(f"diagnostics:\n  every: {every}\n")
    log = RunDir(root).diagnostics
    for step in range(5, 105, 5):
        log.append({"step": step, "weights": {t: w * (1 + seed_shift) for t, w in weights.items()}})
    return root


def test_weights_panels_have_their_own_scale(tmp_path: Path):
    """Issue 11 item 14: FAMO's small weights must not be flat next to AvgNorm's 60."""
    from taskbalance.plots.diagnostics import load_records, quantity_figure

    famo = _weights_run(tmp_path / "famo", {"semseg": 0.02, "depth": 0.05, "edge": 0.1})
    avgnorm = _weights_run(tmp_path / "avgnorm", {"semseg": 1.0, "depth": 3.0, "edge": 60.0})
    figure = quantity_figure({"famo": [load_records(famo)], "avgnorm": [load_records(avgnorm)]}, "weights")
    ax_famo, ax_avg = figure.axes[:2]
    assert not ax_famo.get_shared_y_axes().joined(ax_famo, ax_avg)
    assert ax_famo.get_ylim()[1] < 0.2 and ax_famo.get_yscale() == "linear"
    assert ax_avg.get_yscale() == "log"  # 1 to 60 in one panel


def test_seeds_of_an_arm_draw_mean_and_band():
    from taskbalance.plots.diagnostics import seed_band

    xs, means, stds = seed_band([([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), ([1.0, 2.0], [3.0, 4.0])])
    assert xs == [1.0, 2.0] and means == [2.0, 3.0] and stds == pytest.approx([2 ** 0.5, 2 ** 0.5])


def test_plot_on_a_study_folder_groups_seeds(tmp_path: Path):
    """Issue 11 item 14: `plot` on a study folder must not say "train with diagnostics.every > 0"."""
    from taskbalance.plots import find_runs

    study = tmp_path / "study"
    for seed, shift in ((0, 0.0), (1, 0.1)):
        _weights_run(study / "uniform" / f"seed-{seed}", {"semseg": 1.0, "depth": 1.0}, seed_shift=shift)
    _weights_run(study / "avgnorm" / "seed-0", {"semseg": 1.0, "depth": 3.0})
    _weights_run(study / "avgnorm.stale-abc" / "seed-0", {"semseg": 1.0, "depth": 3.0})
    runs, labels = find_runs([study])
    assert labels == ["avgnorm", "uniform", "uniform"] and runs[0] == study / "avgnorm" / "seed-0"
    result = CliRunner().invoke(app, ["plot", str(study), "--out", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "figs" / "weights.png").is_file() and "diagnostics.every" not in result.output


def test_missing_diagnostics_say_why(tmp_path: Path):
    off = tmp_path / "off"
    off.mkdir()
    (off / "config.yaml").write_text("diagnostics:\n  every: 0\n")
    result = CliRunner().invoke(app, ["plot", str(off)])
    assert result.exit_code == 1 and "trained with diagnostics.every = 0" in " ".join(result.output.split())
    (off / "config.yaml").write_text("diagnostics:\n  every: 5\n")
    result = CliRunner().invoke(app, ["plot", str(off)])
    assert result.exit_code == 1 and "no diagnostics records yet" in " ".join(result.output.split())


def test_plots_do_not_import_training():
    """plots <-> training import circle: importing the figures must not load the training package (the static
    check of every import, deferred ones included, is tests/test_import_cycles.py)."""
    import subprocess
    import sys

    code = "import sys, taskbalance.plots; print('taskbalance.training' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
        .stdout.strip()
        == "False"
    )
