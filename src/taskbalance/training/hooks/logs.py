"""The logging hook: the training log (``metrics.jsonl``), the gradient diagnostics (``diagnostics.jsonl``) and
TensorBoard, on the main process."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from taskbalance.jsonlines import JsonLines
from taskbalance.records import TrainRecord, ValidationRecord, append_record
from taskbalance.training.diagnostics import diagnostic_record, tensorboard_scalars
from taskbalance.training.hooks.base import Hook


class MetricsLogger(Hook):
    """Writes a :class:`~taskbalance.records.TrainRecord` every ``log_every`` steps (and at the last step), a
    :class:`~taskbalance.records.DiagnosticsRecord` at every diagnosed step, the evaluations other hooks hand it
    (:meth:`log_validation`, :meth:`log_test`) and their TensorBoard scalars.

    A resumed run's logs are cut back to the step it continues from, and its TensorBoard writer purges the events
    after that step (those of the step itself were logged before its checkpoint).
    """

    def __init__(self, metrics: JsonLines, diagnostics: JsonLines, tensorboard: Path, log_every: int) -> None:
        self.metrics, self.diagnostics, self.tensorboard, self.log_every = metrics, diagnostics, tensorboard, log_every
        self.writer: SummaryWriter | None = None

    def before_run(self) -> None:
        if not self.loop.dist.is_main:
            return
        step = self.loop.state.step
        self.metrics.truncate_after(step)
        self.diagnostics.truncate_after(step)
        self.writer = SummaryWriter(str(self.tensorboard), purge_step=step + 1)

    def after_step(self) -> None:
        loop, outcome = self.loop, self.loop.outcome
        assert outcome is not None
        if not loop.dist.is_main:
            return
        step, result = loop.state.step, outcome.result
        if step % self.log_every == 0 or outcome.finished:
            loss = sum(result.losses.values())
            lr = loop.scheduler.get_last_lr()[0]
            append_record(self.metrics, TrainRecord(step=step, epoch=loop.state.epoch, lr=lr, loss=loss,
                                                    losses=result.losses, weights=result.weights))
            self._scalars({"train/loss": loss, "train/lr": lr})
            for task, value in result.losses.items():
                self._scalars({f"train/loss/{task}": value, f"train/weight/{task}": result.weights[task]})
        if outcome.diagnose:
            record = diagnostic_record(step, result, outcome.extras.get("feature_distance"))
            if record is not None:
                append_record(self.diagnostics, record)
                self._scalars(tensorboard_scalars(record))

    def log_validation(self, record: ValidationRecord) -> None:
        """Write an evaluation on the validation split (main process)."""
        append_record(self.metrics, record)
        self._scalars({"val/score": record.score if record.score is not None else float("nan")})
        self._metric_scalars("val", record.metrics)

    def log_test(self, metrics: Mapping[str, Mapping[str, float | None]]) -> None:
        """The final test metrics to TensorBoard (main process)."""
        self._metric_scalars("test", metrics)

    def after_run(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _metric_scalars(self, prefix: str, metrics: Mapping[str, Mapping[str, float | None]]) -> None:
        self._scalars({f"{prefix}/{task}/{name}": value for task, values in metrics.items()
                       for name, value in values.items()})

    def _scalars(self, scalars: Mapping[str, float | None]) -> None:
        if self.writer is None:
            return
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, self.loop.state.step)
