"""The four benchmark presets: their settings, and the CPU versions end to end on the stand-in data."""

import json

import pytest
import typer
from typer.testing import CliRunner

from taskbalance.cli.protocol import register
from taskbalance.data import DataError
from taskbalance.protocols import NYUV2_COLUMNS, available_protocols, protocol_preset, run_protocol
from taskbalance.protocols.report import protocol_table, to_markdown
from taskbalance.protocols.suite import run_suite
from taskbalance.results import load_run_result

NYU_HEADERS = ["Method", "mIoU ↑", "Pix Acc ↑", "Abs Err ↓", "Rel Err ↓", "Normal Mean ↓", "Normal Median ↓",
               "11.25 ↑", "22.5 ↑", "30 ↑", "Δm% ↑"]


def test_full_presets_have_the_papers_settings():
    assert available_protocols() == ("nyuv2-mtan", "cityscapes", "celeba", "multimnist")
    nyu, city, celeba = protocol_preset("nyuv2-mtan"), protocol_preset("cityscapes"), protocol_preset("celeba")
    for preset, batch in ((nyu, 2), (city, 8)):
        s = preset.schedule
        assert (s.epochs, s.batch_size, s.lr, s.halve_at) == (200, batch, 1e-4, 100)
        assert (preset.reporting.rule, preset.reporting.epochs) == ("last_epochs", 10)
    assert nyu.columns(("semseg", "depth", "normals")) == NYUV2_COLUMNS
    assert city.baseline["semseg"]["mIoU"] == 74.01
    assert (celeba.schedule.epochs, celeba.schedule.batch_size, celeba.schedule.lr) == (15, 256, 3e-4)
    assert celeba.reporting.rule == "best_val"


@pytest.mark.parametrize("name", ["nyuv2-mtan", "multimnist", "celeba"])
def test_full_presets_need_a_dataset_folder(name):
    with pytest.raises(DataError, match="pass root="):
        protocol_preset(name).load("train", None, 0)


def test_unknown_protocol():
    with pytest.raises(ValueError, match="available: nyuv2-mtan"):
        protocol_preset("qm9")


def test_nyuv2_cpu_end_to_end_has_the_papers_columns(tmp_path):
    preset = protocol_preset("nyuv2-mtan", cpu=True)
    outcome = run_protocol(preset, method="uniform", out=tmp_path / "uniform")
    assert len(outcome.history) == preset.schedule.epochs
    # the reported value is the mean over the last epochs of the per-epoch test metrics
    expected = sum(h["semseg"]["mIoU"] for h in outcome.history[-preset.reporting.epochs:]) / preset.reporting.epochs
    assert outcome.reported["semseg"]["mIoU"] == pytest.approx(expected)
    assert outcome.delta_m is None  # the stand-in has no hard-coded single-task baseline
    stored = load_run_result(tmp_path / "uniform" / "results.json")
    assert stored.tasks == ["semseg", "depth", "normals"] and stored.selection.startswith("mean of the last")
    history = json.loads((tmp_path / "uniform" / "history.json").read_text())
    assert len(history["test"]) == preset.schedule.epochs
    table = protocol_table([stored], preset.columns(stored.tasks), protocol_preset("nyuv2-mtan").baseline)
    assert table.headers() == NYU_HEADERS
    assert to_markdown(table).splitlines()[0] == "| " + " | ".join(NYU_HEADERS) + " |"


def test_cityscapes_cpu_end_to_end_with_a_user_baseline():
    baseline = {"semseg": {"mIoU": 50.0, "pixel_acc": 50.0}, "depth": {"abs_err": 1.0, "rel_err": 1.0}}
    outcome = run_protocol(protocol_preset("cityscapes", cpu=True), method="uniform", baseline=baseline)
    reported = outcome.reported
    expected = (reported["semseg"]["mIoU"] / 50 - 1 + reported["semseg"]["pixel_acc"] / 50 - 1
                 - (reported["depth"]["abs_err"] - 1) - (reported["depth"]["rel_err"] - 1)) / 4 * 100
    assert outcome.delta_m == pytest.approx(expected)


def test_celeba_cpu_reports_the_best_validation_epoch():
    outcome = run_protocol(protocol_preset("celeba", cpu=True), method="uniform")
    scores = [sum(m[t]["f1"] for t in m) / len(m) for m in outcome.validation]
    best = scores.index(max(scores))
    assert outcome.reported == outcome.history[best]
    assert len(outcome.result.tasks) == 8


def test_multimnist_cpu_suite_writes_the_table_with_single_task_rows(tmp_path):
    table = run_suite(protocol_preset("multimnist", cpu=True), ["uniform", "famo"], tmp_path)
    assert [row[0] for row in table.rows] == ["Single-task", "uniform", "famo"]
    assert table.rows[0][2] == 0.0
    assert (tmp_path / "stl-left" / "results.json").is_file() and (tmp_path / "report.csv").is_file()
    report = (tmp_path / "report.md").read_text()
    note = "stand-in data: a pipeline check, not comparable with the papers"  # issue 18 item 6
    assert report.startswith(f"# MultiMNIST left/right digits, MultiLeNet ({note})\n")
    assert f"| Method ({note}) | left ↑ | right ↑ | Δm% ↑ |" in report and "higher is better" in report
    assert (tmp_path / "report.csv").read_text().startswith(f"\"Method ({note})\",left ↑")
    again = run_suite(protocol_preset("multimnist", cpu=True), ["uniform", "famo"], tmp_path)  # read back, not re-run
    assert again == table


def test_cli_runs_a_cpu_benchmark(tmp_path):
    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)
    runner = CliRunner()
    listed = runner.invoke(app, ["protocol", "list"])
    assert listed.exit_code == 0 and "nyuv2-mtan" in listed.output
    result = runner.invoke(app, ["protocol", "run", "multimnist", "--cpu", "--out", str(tmp_path), "-m", "famo",
                                 "-o", "famo.gamma=0.01", "--no-stl"])
    assert result.exit_code == 0, result.output
    assert load_run_result(tmp_path / "famo" / "results.json").meta["method_options"] == {"gamma": 0.01}
    assert "Δm% ↑" in result.output and "Δm% ↓" not in result.output.replace("Δm% ↓ as printed", "")
    assert "pipeline check, not comparable with the papers" in " ".join(result.output.split())
    bad = runner.invoke(app, ["protocol", "run", "nyuv2-mtan", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "pass root=" in bad.output
    checked = runner.invoke(app, ["protocol", "check", "cityscapes", "--root", str(tmp_path / "missing")])
    assert checked.exit_code == 1 and "does not exist" in " ".join(checked.output.split())
