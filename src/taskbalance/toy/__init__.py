"""The two-objective toy benchmark of CAGrad / Nash-MTL / FAMO / IMGrad (docs/toy.md).

``problem`` (objectives, exact Pareto set, optimum), ``methods`` (method specs), ``presets`` (per-paper settings),
``runner`` (Adam on x with one balancer per method and start), ``report`` (distances and tables), ``plot`` (the
figure) and ``outputs`` (the artefacts of a run, written with ``taskbalance.atomic``).
"""

from taskbalance.toy.methods import MethodSpec, parse_methods
from taskbalance.toy.presets import PRESETS, ToySettings, resolve_settings
from taskbalance.toy.problem import ToyProblem, pareto_set
from taskbalance.toy.report import Outcome, summarize
from taskbalance.toy.runner import ToyRun, run_toy

__all__ = [
    "PRESETS",
    "MethodSpec",
    "Outcome",
    "ToyProblem",
    "ToyRun",
    "ToySettings",
    "pareto_set",
    "parse_methods",
    "resolve_settings",
    "run_toy",
    "summarize",
]
