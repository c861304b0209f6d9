"""Δm (Eq. (5)) reproduces the Δm column of the paper's Table II from its per-task numbers."""

import csv
from pathlib import Path

import pytest

from taskbalance.results import ResultsError, delta_m, task_improvements

TABLE = Path(__file__).parent / "data" / "table2.csv"
HIGHER_IS_BETTER = {"semseg": True, "human_parts": True, "depth": False, "normals": False, "sal": True, "edge": True}


def _rows() -> list[dict[str, str]]:
    with TABLE.open(encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


ROWS = _rows()


def _baseline(dataset: str) -> dict[str, str]:
    return next(
        r for r in ROWS if r["dataset"] == dataset and r["backbone"] == "ResNet-18" and r["method"] == "Single-task"
    )


def _values(row: dict[str, str]) -> dict[str, float]:
    return {t: float(row[t]) for t in HIGHER_IS_BETTER if row[t]}


def _half_ulp(printed: str, task: str) -> float:
    """Half a unit of the last printed digit. Every odsF in Table II ends in 0 (three-digit F scores ×100)."""
    return 0.05 if task == "edge" else 0.5 * 10 ** -len(printed.split(".")[1])


def _rounding_bound(row: dict[str, str], base: dict[str, str]) -> float:
    """Largest change of Δm that rounding the printed inputs (and the printed Δm) can explain."""
    tasks = list(_values(row))
    spread = sum(
        _half_ulp(row[t], t) / float(base[t]) + float(row[t]) * _half_ulp(base[t], t) / float(base[t]) ** 2
        for t in tasks
    )
    return 100 * spread / len(tasks) + 0.005


# Rows whose printed Δm is off by more than 0.01 from Eq. (5) on the printed numbers.
ROUNDING = {  # off by < 0.03: explained by rounding of the printed inputs (checked below)
    ("nyud", "ResNet-18", "CAGrad"): -0.3293,
    ("nyud", "ResNet-18", "URL"): -0.1483,
    ("nyud", "MTAN", "Uniform"): 0.7038,
    ("pascal", "ResNet-18", "MGDA"): -7.2040,
    ("pascal", "ResNet-18", "GradDrop"): -4.4333,
    ("pascal", "ResNet-18", "URL"): -1.3417,
    ("pascal", "MTAN", "Single-task"): 0.4346,
    ("pascal", "MTAN", "FAMO"): -1.8459,
    ("pascal", "MTAN", "PCGrad"): -1.6720,
    ("pascal", "MTAN", "NashMTL"): -0.7514,
}
INCONSISTENT = {  # off by far more than rounding allows: typos in the paper's table
    ("nyud", "MTAN", "CAGrad"): (0.8802, "printed +1.01"),
    ("pascal", "ResNet-18", "Grid Search"): (-2.7783, "printed -2.64"),
    ("pascal", "ResNet-18", "UW"): (-4.3190, "printed -4.15"),
    ("pascal", "ResNet-18", "NashMTL"): (-1.9720, "printed -2.40"),
    ("pascal", "MTAN", "FairGrad"): (
        -2.6788,
        "printed -1.61; its Seg./H. Parts/Norm./Sal. entries repeat the ResNet-18 FairGrad row",
    ),
}


def _param(row: dict[str, str]):
    key = (row["dataset"], row["backbone"], row["method"])
    marks = []
    if key in ROUNDING:
        marks = [
            pytest.mark.xfail(
                strict=True, reason=f"paper rounding: Eq. (5) on the printed numbers gives {ROUNDING[key]:+.4f}"
            )
        ]
    elif key in INCONSISTENT:
        value, note = INCONSISTENT[key]
        marks = [pytest.mark.xfail(strict=True, reason=f"paper typo: Eq. (5) gives {value:+.4f}, {note}")]
    return pytest.param(row, id="-".join(key).replace(" ", "_"), marks=marks)


def test_table_has_every_row_of_both_datasets():
    assert sum(r["dataset"] == "nyud" for r in ROWS) == 30
    assert sum(r["dataset"] == "pascal" for r in ROWS) == 30


@pytest.mark.parametrize("row", [_param(r) for r in ROWS])
def test_table2_delta_m_within_001(row):
    base = _baseline(row["dataset"])
    value = delta_m(_values(row), _values(base), HIGHER_IS_BETTER)
    assert value == pytest.approx(float(row["delta_m"]), abs=0.01 + 1e-9)


@pytest.mark.parametrize("key", sorted(ROUNDING))
def test_rows_off_by_more_than_001_are_explained_by_rounding(key):
    row = next(r for r in ROWS if (r["dataset"], r["backbone"], r["method"]) == key)
    base = _baseline(row["dataset"])
    value = delta_m(_values(row), _values(base), HIGHER_IS_BETTER)
    assert value == pytest.approx(ROUNDING[key], abs=5e-5)
    assert abs(value - float(row["delta_m"])) <= _rounding_bound(row, base)


def test_uniform_nyud_resnet18_example_from_the_issue():
    base, uniform = _baseline("nyud"), next(r for r in ROWS if r["dataset"] == "nyud" and r["method"] == "Uniform")
    assert round(delta_m(_values(uniform), _values(base), HIGHER_IS_BETTER), 2) == -2.93


def test_signs_follow_metric_direction():
    m = task_improvements(
        {"semseg": 44.0, "depth": 0.55}, {"semseg": 40.0, "depth": 0.5}, {"semseg": True, "depth": False}
    )
    assert m == pytest.approx({"semseg": 10.0, "depth": -10.0})
    assert delta_m(
        {"semseg": 44.0, "depth": 0.45}, {"semseg": 40.0, "depth": 0.5}, {"semseg": True, "depth": False}
    ) == pytest.approx(10.0)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ResultsError, match="task 'edge' has no single-task baseline"):
        delta_m({"edge": 70.0}, {"semseg": 40.0}, {"edge": True})
    with pytest.raises(ResultsError, match="task 'depth': the baseline value is 0"):
        delta_m({"depth": 0.5}, {"depth": 0.0}, {"depth": False})
    with pytest.raises(ResultsError, match="task 'depth': whether higher is better"):
        delta_m({"depth": 0.5}, {"depth": 0.4}, {})
    with pytest.raises(ResultsError, match="not finite"):
        delta_m({"depth": float("nan")}, {"depth": 0.4}, {"depth": False})
