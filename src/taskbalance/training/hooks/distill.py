"""The distillation hook (URL, :mod:`taskbalance.training.url`): the feature distances to the single-task teachers,
added to the task losses (``distill``) or measured with detached features (``measure``, the paper's Fig. 6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from taskbalance.balancers.driver import Forward
from taskbalance.training.hooks.base import Hook
from taskbalance.training.url import FeatureAligner, total


class Distillation(Hook):
    """Adds ``λ_t · dist_t`` to each task's loss with a teacher (``mode="distill"``), or back-propagates the summed
    distances outside the balancing into the adaptors only (``"measure"``); hands the step's distances to the logs
    as ``feature_distance``. The adaptors train with the model and are saved in checkpoints as ``aligner``.

    Args:
        aligner: teachers and adaptors (:meth:`FeatureAligner.build`).
        mode: ``distill`` or ``measure``; ``weights``: λ per task (default 1).
    """

    def __init__(self, aligner: FeatureAligner, mode: str, weights: Mapping[str, float]) -> None:
        self.aligner, self.mode, self.weights = aligner, mode, dict(weights)
        self._first: dict[str, Tensor] | None = None

    def modules(self) -> Mapping[str, nn.Module]:
        return {"aligner": self.aligner}

    def state_dict(self) -> dict[str, Any]:
        return {"aligner": self.aligner.state_dict()}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        self.aligner.load_state_dict(saved["aligner"])

    def before_step(self) -> None:
        self._first = None

    def on_forward(self, images: Tensor, output: Any, forward: Forward) -> Forward:
        distances = self.aligner.distances(images, output.features)
        if self._first is None:  # the step's own forward (FAMO's re-evaluation after the update comes second)
            self._first = distances
        if self.mode == "distill":
            losses = {t: loss + self.weights.get(t, 1.0) * distances[t] if t in distances else loss
                      for t, loss in forward.losses.items()}
            return Forward(losses, forward.features, forward.extra)
        if distances and self.aligner.detach_student:
            return Forward(forward.losses, forward.features, total(distances.values()))
        return forward

    def after_step(self) -> None:
        outcome = self.loop.outcome
        # only the diagnostics record of rank 0 reads it: no device sync on the other steps and ranks
        if self._first is not None and outcome is not None and outcome.diagnose and self.loop.dist.is_main:
            outcome.extras["feature_distance"] = {t: float(v.detach()) for t, v in self._first.items()}
