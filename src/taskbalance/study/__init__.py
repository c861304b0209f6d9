"""The study: an experiment of the paper expanded into runs (every arm once per seed), run, and reported.

What lives here:

* ``plan``: the study preset (:class:`StudySpec`), and its runs, each holding its validated ``RunConfig``;
* ``schedule``: runs the plan (skip what is finished, set aside what is stale, execute in dependency order);
* ``executors``, ``run_task``, ``cluster``: where the runs execute (this process, local processes, submitit/SLURM);
* ``staleness``: a run directory trained under another config is moved aside, never reused;
* ``curves``: the validation curves of a study's runs;
* ``report``: the study report, computed as a typed model and rendered (Markdown, tables, figures, JSON).

What it may import: :mod:`taskbalance.training` (configs, presets, the trainer, run directories, worker processes),
:mod:`taskbalance.results`, :mod:`taskbalance.plots` and the packages below them. Nothing in ``training`` imports
``study`` (``tests/test_layering.py``).
"""

from taskbalance.study.plan import PlannedRun, StudySpec, load_study, plan
from taskbalance.study.schedule import StudyIncomplete, run_study

__all__ = ["PlannedRun", "StudyIncomplete", "StudySpec", "load_study", "plan", "run_study"]
