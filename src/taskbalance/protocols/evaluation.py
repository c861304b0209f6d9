"""The protocol runner's hook: the papers' test evaluation after every epoch (and the validation one for the
best-validation rule), kept in the checkpoints so that a resumed run reports over every epoch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskbalance.training.evaluate import evaluate
from taskbalance.training.hooks.base import Hook

Metrics = dict[str, dict[str, float]]


class EpochEvaluation(Hook):
    """At every epoch end: the metrics on ``test`` into :attr:`history` and, when given, on ``val`` into
    :attr:`validation` (``test`` and ``val``: the splits' loaders)."""

    def __init__(self, test: Any, val: Any | None = None) -> None:
        self.test, self.val = test, val
        self.history: list[Metrics] = []
        self.validation: list[Metrics] = []

    def after_step(self) -> None:
        loop = self.loop
        assert loop.outcome is not None
        if not loop.outcome.epoch_done:
            return
        self.history.append(evaluate(loop.model, self.test, loop.specs, loop.device))
        if self.val is not None:
            self.validation.append(evaluate(loop.model, self.val, loop.specs, loop.device))

    def state_dict(self) -> dict[str, Any]:
        return {"protocol_history": {"test": self.history, "val": self.validation}}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        self.history = list(saved["protocol_history"]["test"])
        self.validation = list(saved["protocol_history"]["val"])
