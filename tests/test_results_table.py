"""The paper-style table, its renderings, the radar chart and the ``taskbalance results`` CLI."""

import csv
import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.results import (
    ResultsError,
    RunResult,
    radar_chart,
    render_text,
    results_table,
    save_results,
    save_run_result,
    to_rich,
)


def make(
    name: str, kind: str = "mtl", run_meta: dict | None = None, method: str | None = None, **values: float
) -> RunResult:
    meta = {"semseg": ("mIoU", True), "depth": ("rmse", False), "normals": ("mean", False), "edge": ("odsF", True)}
    return RunResult(
        name=name, method=method or name, kind=kind, tasks=list(values),
        metrics={t: {meta[t][0]: v} for t, v in values.items()},
        primary={t: meta[t][0] for t in values}, higher_is_better={t: meta[t][1] for t in values},
        meta=run_meta or {},
    )


BASE = make("Single-task", kind="stl", semseg=40.0, depth=0.5)
RUNS = [make("grid_search", semseg=44.0, depth=0.55), make("avgnorm", semseg=42.0, depth=0.45)]


def test_rows_hold_values_improvements_and_delta_m():
    table = results_table(RUNS, BASE)
    assert [c.header + " " + c.arrow for c in table.columns] == ["Seg. mIoU ↑", "Dep. RMSE ↓"]
    assert [r.name for r in table.rows] == ["Single-task", "grid_search", "avgnorm"]
    assert table.rows[0].is_baseline and table.rows[0].delta_m.mean == 0.0
    assert [m.mean for m in table.rows[1].improvements] == pytest.approx([10.0, -10.0])
    assert table.rows[1].delta_m.mean == pytest.approx(0.0)
    assert [m.mean for m in table.rows[2].improvements] == pytest.approx([5.0, 10.0])
    assert (
        table.rows[2].delta_m.mean == pytest.approx(7.5) and table.rows[2].n == 1 and table.rows[2].delta_m.std is None
    )


def test_markdown_of_one_seed_says_it_cannot_separate_the_arms():
    text = render_text(results_table(RUNS, BASE, baseline_mode="per-seed"), "markdown")
    assert text.startswith(
        "| Method | n | Seg. mIoU ↑ | Dep. RMSE ↓ | Δm% ↑ | Δm 95% CI |\n"
        "|---|:---:|:---:|:---:|:---:|:---:|\n"
        "| Single-task | 1 | 40.00 | 0.5000 | +0.00 | — |\n"
        "| grid_search | 1 | 44.00 | 0.5500 | +0.00 | — |\n"
        "| avgnorm | 1 | 42.00 | 0.4500 | +7.50 | — |\n"
    )
    assert "against the same seed's single-task runs" in text and "one seed cannot separate the arms" in text


def test_csv_keeps_full_precision():
    rows = list(csv.reader(io.StringIO(render_text(results_table(RUNS, BASE), "csv"))))
    assert rows[0][:6] == ["Method", "n", "Seg. mIoU ↑ mean", "Seg. mIoU ↑ std", "Dep. RMSE ↓ mean", "Dep. RMSE ↓ std"]
    assert rows[0][6:] == ["Δm% ↑ mean", "Δm% ↑ std", "Δm% ↑ CI low", "Δm% ↑ CI high"]
    assert rows[3][:2] == ["avgnorm", "1"] and float(rows[3][4]) == 0.45 and float(rows[3][6]) == pytest.approx(7.5)
    assert rows[3][7:] == ["", "", ""] and rows[-1][0].startswith("# One seed per arm")


def test_latex_escapes_and_separates_the_baseline():
    text = render_text(results_table(RUNS, BASE), "latex")
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{lccccc}"
    assert lines[2] == (
        r"Method & $n$ & Seg. mIoU $\uparrow$ & Dep. RMSE $\downarrow$ & $\Delta_m\%$ $\uparrow$ & "
        r"$\Delta_m$ 95\% CI \\"
    )
    assert lines[4:7] == [r"Single-task & 1 & 40.00 & 0.5000 & +0.00 & -- \\", r"\midrule",
                          r"grid\_search & 1 & 44.00 & 0.5500 & +0.00 & -- \\"]
    assert lines[-1] == r"\end{tabular}" and "one seed cannot separate the arms" in lines[-2]


def test_rich_table_renders():
    console = Console(record=True, width=120)
    console.print(to_rich(results_table(RUNS, BASE)))
    text = console.export_text()
    assert "Seg. mIoU ↑" in text and "+7.50" in text and "avgnorm" in text


def test_table_errors_name_the_problem():
    with pytest.raises(ResultsError, match="run 'x' has no result for task 'depth'"):
        results_table([make("x", semseg=1.0)], BASE, tasks=["semseg", "depth"])
    approx = RunResult(name="y", method="y", kind="mtl", tasks=["edge"], metrics={"edge": {"approx_F": 50.0}},
                       primary={"edge": "approx_F"}, higher_is_better={"edge": True})
    with pytest.raises(
        ResultsError, match="reports 'approx_F' as the primary metric of task 'edge', but the baseline uses 'odsF'"
    ):
        results_table([approx], make("b", kind="stl", edge=70.0))
    with pytest.raises(ResultsError, match="task 'normals' is missing from the single-task baseline"):
        results_table(RUNS, BASE, tasks=["normals"])
    with pytest.raises(ResultsError, match="unknown table format"):
        render_text(results_table(RUNS, BASE), "html")


def test_radar_chart_writes_a_png(tmp_path):
    base = make("Single-task", kind="stl", semseg=40.0, depth=0.5, normals=20.0, edge=70.0)
    runs = [make("a", semseg=41.0, depth=0.48, normals=21.0, edge=69.0)]
    out = radar_chart(results_table(runs, base), tmp_path / "fig" / "radar.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["radar.png"]
    with pytest.raises(ResultsError, match="at least 3 tasks"):
        radar_chart(results_table(RUNS, BASE), tmp_path / "no.png")


def test_cli_table_and_collect_from_run_directories(tmp_path):
    runner = CliRunner()
    for r in RUNS:
        save_run_result(r, tmp_path / "runs" / r.name)
    save_run_result(make("stl_seg", kind="stl", semseg=40.0), tmp_path / "stl" / "semseg")
    save_run_result(make("stl_dep", kind="stl", depth=0.5), tmp_path / "stl" / "depth")
    stl = ["--baseline", str(tmp_path / "stl" / "semseg"), "--baseline", str(tmp_path / "stl" / "depth")]
    result = runner.invoke(app, ["results", "table", str(tmp_path / "runs"), *stl, "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| avgnorm | 1 | 42.00 | 0.4500 | +7.50 | — |" in result.output
    out = tmp_path / "table.tex"
    result = runner.invoke(
        app, ["results", "table", str(tmp_path / "runs"), "-b", str(tmp_path / "stl"), "-f", "latex", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert r"avgnorm & 1 & 42.00 & 0.4500 & +7.50 & -- \\" in out.read_text()
    collected = tmp_path / "all.json"
    assert runner.invoke(app, ["results", "collect", str(tmp_path / "runs"), "-o", str(collected)]).exit_code == 0
    result = runner.invoke(app, ["results", "table", str(collected), "-b", str(tmp_path / "stl")])
    assert result.exit_code == 0 and "+7.50" in result.output


def test_cli_radar(tmp_path):
    base = make("Single-task", kind="stl", semseg=40.0, depth=0.5, normals=20.0)
    save_results([make("a", semseg=41.0, depth=0.48, normals=21.0)], tmp_path / "runs.json")
    save_run_result(base, tmp_path / "stl")
    out = tmp_path / "radar.png"
    result = CliRunner().invoke(
        app, ["results", "radar", str(tmp_path / "runs.json"), "-b", str(tmp_path / "stl"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    result = CliRunner().invoke(
        app,
        [
            "results",
            "radar",
            str(tmp_path / "runs.json"),
            "-b",
            str(tmp_path / "stl"),
            "-o",
            str(out),
            "--tasks",
            "semseg,depth",
        ],
    )
    assert result.exit_code == 1 and "at least 3 tasks" in result.output


def test_cli_reports_errors_with_exit_code_1(tmp_path):
    save_results(RUNS, tmp_path / "runs.json")
    save_run_result(make("stl_seg", kind="stl", semseg=40.0), tmp_path / "stl")
    result = CliRunner().invoke(
        app, ["results", "table", str(tmp_path / "runs.json"), "-b", str(tmp_path / "stl"), "--tasks", "depth"]
    )
    assert result.exit_code == 1
    assert "task 'depth' is missing from the single-task baseline" in result.output


def test_radar_title_is_rendered_and_seeds_draw_a_band():
    """Issue 11 item 14: the radar title must not show a raw `M_i`; the chart draws the spread over seeds."""
    from taskbalance.results import baseline_arm, group_runs
    from taskbalance.results.radar import radar_figure

    def seeded(name, seed, kind="mtl", **values):
        return make(name, kind=kind, run_meta={"seed": seed}, **values)

    base = [seeded("stl", s, kind="stl", semseg=40.0, depth=0.5, normals=20.0) for s in (0, 1)]
    runs = [seeded("a", s, semseg=41.0 + s, depth=0.48, normals=21.0) for s in (0, 1)]
    figure = radar_figure(results_table(group_runs(runs), baseline_arm(base)))
    ax = figure.axes[0]
    assert "$M_i$" in ax.get_title() and "M_i" not in ax.get_title().replace("$M_i$", "")
    assert len(ax.collections) == 1  # the ± std band of the one arm with two seeds
    assert "n=2" in ax.get_legend().get_texts()[0].get_text()
