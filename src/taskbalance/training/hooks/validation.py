"""The validation hook: evaluate on the validation split when the schedule says so, select the best checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskbalance.records import ValidationRecord
from taskbalance.training import checkpoint as ckpt
from taskbalance.training.evaluate import evaluate, primary, selection_score
from taskbalance.training.hooks.base import Hook
from taskbalance.training.hooks.logs import MetricsLogger


class Validation(Hook):
    """At every evaluation of the schedule (main process): the metrics on ``batches`` (the validation split), the
    selection score (Δm of the primary metrics against ``baseline``, the single-task metrics, or else against the
    run's first evaluation with no zero primary metric), the ``best`` checkpoint (weights) when the score improves,
    and the :class:`~taskbalance.records.ValidationRecord` handed to ``logger``.

    Args:
        batches: the validation loader; ``checkpoints``: the folder of the ``best`` checkpoint.
        baseline: task -> metric -> single-task value, or None.
        max_batches: evaluate on at most that many batches (None: all).
    """

    def __init__(self, batches: Any, checkpoints: Path, logger: MetricsLogger,
                 baseline: dict[str, dict[str, float]] | None = None, max_batches: int | None = None) -> None:
        self.batches, self.checkpoints, self.logger = batches, checkpoints, logger
        self.baseline, self.max_batches = baseline, max_batches

    def after_step(self) -> None:
        loop = self.loop
        assert loop.outcome is not None
        if not loop.outcome.evaluate or not loop.dist.is_main:
            return
        state, specs = loop.state, loop.specs
        metrics = evaluate(loop.model, self.batches, specs, loop.device, loop.amp, self.max_batches)
        if self.baseline:
            state.reference = {t: self.baseline[t][s.primary_metric] for t, s in specs.items()}
        elif state.reference is None or 0 in state.reference.values():
            state.reference = primary(metrics, specs)  # the first evaluation with no zero primary metric
        score = selection_score(metrics, state.reference, specs)
        improved = state.best_score is None or score > state.best_score
        if improved:
            state.best_score, state.best_step = score, state.step
            ckpt.save_checkpoint(self.checkpoints, "best", state.step, loop.model)
        self.logger.log_validation(ValidationRecord(
            step=state.step, metrics=metrics, score=score, best=improved,
            primary={t: s.primary_metric for t, s in specs.items()},
            higher_is_better={t: s.higher_is_better for t, s in specs.items()}))
