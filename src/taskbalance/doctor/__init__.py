"""``taskbalance doctor``: read a run's gradient diagnostics, name its imbalance (gradient norms, conflicts, tasks at
risk) and recommend a registered method, with the numbers behind it; checked against a study's measured outcome.

``signals`` reads the records and computes shares, norm ratios and conflicts; ``rules`` holds the sourced thresholds
and the recommendation rule; ``validate`` compares the diagnosis of each seed's uniform run with the study;
``render`` and ``figure`` write the reports. Sources of the thresholds: docs/doctor.md.

May import: ``balancers`` (the methods it may recommend), ``plots``, ``results``, ``records``, ``conventions``
and ``atomic``; never training or the study (it reads their files).
"""

from taskbalance.doctor.rules import Diagnosis, Recommendation, diagnose
from taskbalance.doctor.signals import DoctorError, Signals, compute_signals, read_records
from taskbalance.doctor.validate import StudyCheck, check_studies

__all__ = ["Diagnosis", "DoctorError", "Recommendation", "Signals", "StudyCheck", "check_studies", "compute_signals",
           "diagnose", "read_records"]
