"""The study report: the numbers over seeds, convergence, power and verdicts of a study's finished runs, written
to ``<study>/report.md`` and its companions (see :mod:`taskbalance.study.report.write`).

It reads the runs through the :class:`~taskbalance.study.report.write.ReportRun` protocol and never imports the
study's planner or scheduler.
"""

from taskbalance.study.report.write import ReportRun, ReportSpec, write_report

__all__ = ["ReportRun", "ReportSpec", "write_report"]
