"""A report of the CPU versions (stand-in data) says so in its title and table; a real benchmark's does not
(issue 18 item 6)."""

from taskbalance.protocols.delta import MetricColumn
from taskbalance.protocols.report import STAND_IN_NOTE, ProtocolTable, report_markdown, to_csv

COLUMNS = (MetricColumn("semseg", "mIoU", True, "mIoU"),)
ROWS = (("uniform", (0.25,), 1.5),)


def test_a_stand_in_report_says_it_is_a_pipeline_check_in_title_table_and_csv() -> None:
    table = ProtocolTable(COLUMNS, ROWS, stand_in=True)
    report = report_markdown("nyuv2-mtan pipeline", table, "nyuv2-mtan-cpu")
    assert STAND_IN_NOTE == "stand-in data: a pipeline check, not comparable with the papers"
    assert report.splitlines()[0] == f"# nyuv2-mtan pipeline ({STAND_IN_NOTE})"
    assert f"| Method ({STAND_IN_NOTE}) | mIoU ↑ | Δm% ↑ |" in report
    assert "Reported by the method papers on the real data, not comparable with the stand-in table above" in report
    assert to_csv(table).splitlines()[0] == f"\"Method ({STAND_IN_NOTE})\",mIoU ↑,Δm% ↑"  # quoted: it has a comma


def test_a_real_benchmark_report_carries_no_stand_in_note() -> None:
    report = report_markdown("NYUv2 (MTAN protocol), SegNet-MTAN", ProtocolTable(COLUMNS, ROWS), "nyuv2-mtan")
    assert "stand-in" not in report and report.startswith("# NYUv2 (MTAN protocol), SegNet-MTAN\n")
    assert "| Method | mIoU ↑ | Δm% ↑ |" in report and "Reported by the method papers (" in report
