"""The two-objective toy benchmark of CAGrad / Nash-MTL / FAMO / IMGrad (docs/toy.md).

``problem`` (objectives, exact Pareto set, optimum), ``methods`` (method specs), ``presets`` (per-paper settings),
``runner`` (Adam on x with one balancer per method and start), ``report`` (distances and tables), ``plot`` (the
figure) and ``outputs`` (the artefacts of a run, written with ``taskbalance.atomic``).

May import: ``balancers`` (the methods under test), ``results``, ``atomic`` and ``lazy``; nothing of training.
"""

from taskbalance.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "presets",
    "MethodSpec": "methods",
    "Outcome": "report",
    "ToyProblem": "problem",
    "ToyRun": "runner",
    "ToySettings": "presets",
    "pareto_set": "problem",
    "parse_methods": "methods",
    "resolve_settings": "presets",
    "run_toy": "runner",
    "summarize": "report",
})
