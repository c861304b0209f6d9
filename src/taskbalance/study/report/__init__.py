"""The study report: the numbers over seeds, convergence, power and verdicts of a study's finished runs.

* ``model``: the report as typed data (:class:`StudyReport`) and what it reads of a study (``ReportRun``,
  ``ReportSpec``);
* ``checks`` and ``compute``: the numbers, read from the run folders (:func:`compute_report`), nothing rendered;
* ``render``: the console, ``report.md`` and ``report.json`` renderings of a :class:`StudyReport` (the results table
  through :mod:`taskbalance.results.render`);
* ``write``: :func:`write_report` computes, prints, draws the figures and writes the files.

It may import :mod:`taskbalance.results`, :mod:`taskbalance.plots`, :mod:`taskbalance.training` (configs, run
directories) and :mod:`taskbalance.study.curves`; never the study's planner or scheduler, which call it.
"""

from taskbalance.study.report.compute import compute_report
from taskbalance.study.report.model import ReportRun, ReportSpec, StudyReport
from taskbalance.study.report.write import write_report

__all__ = ["ReportRun", "ReportSpec", "StudyReport", "compute_report", "write_report"]
