"""The final-test hook: the selected model on the test split, the imbalance summary and ``results.json``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from taskbalance.records import read_diagnostics
from taskbalance.results.meta import RunMeta
from taskbalance.results.schema import RunResult, save_run_result
from taskbalance.training import checkpoint as ckpt
from taskbalance.training.config import DERIVED_KEYS, RunConfig, config_hash
from taskbalance.training.diagnostics import format_summary, imbalance_summary
from taskbalance.training.evaluate import evaluate
from taskbalance.training.hooks.base import Hook
from taskbalance.training.hooks.logs import MetricsLogger
from taskbalance.training.rundir import RunDir, write_json

if TYPE_CHECKING:
    from taskbalance.data.base import DatasetInfo
    from taskbalance.tasks import TaskSpec


class FinalTest(Hook):
    """After the last step (main process): load the ``best`` checkpoint when the run validated (else keep the last
    weights), evaluate on the test split with the final task specs (the exact edge metric when configured), write
    the imbalance summary and ``results.json`` (:attr:`result`), the test metrics to TensorBoard through ``logger``.

    Args:
        config: the run's config; ``run``: its directory; ``info``: the dataset's info.
        test_split, final_specs: build the test split and the final task specs (on use, after training).
        loader: how a split is batched for evaluation.
        validated: whether the run has a validation split (and so a ``best`` checkpoint).
        warn: how a damaged checkpoint that was skipped is reported.
    """

    def __init__(self, config: RunConfig, run: RunDir, info: DatasetInfo, test_split: Callable[[], Dataset],
                 final_specs: Callable[[], Mapping[str, TaskSpec]], loader: Callable[[Dataset], Any],
                 logger: MetricsLogger, validated: bool, warn: Callable[[str], None]) -> None:
        self.config, self.run, self.info, self.loader = config, run, info, loader
        self.test_split, self.final_specs = test_split, final_specs
        self.logger, self.validated, self.warn = logger, validated, warn
        self.result: RunResult | None = None

    def after_train(self) -> None:
        loop = self.loop
        if not loop.dist.is_main:
            return
        config, state = self.config, loop.state
        best = ckpt.find_checkpoint(self.run.checkpoints, "best", on_damage=self.warn) if self.validated else None
        if best is not None:
            ckpt.load_weights(loop.model, best, loop.device)
        test_set = self.test_split()
        specs = self.final_specs()
        metrics = evaluate(loop.model, self.loader(test_set), specs, loop.device, loop.amp,
                           config.evaluation.max_batches)
        records = read_diagnostics(self.run.root)
        summary = imbalance_summary(records)
        write_json(self.run.imbalance, summary)
        if records:
            loop.console.print(format_summary(summary))
        distilled = config.distill is not None and config.distill.mode == "distill"
        self.result = RunResult(
            name=config.name,
            method="stl" if config.single_task else ("url" if distilled else config.method.name),
            kind="stl" if config.single_task else "mtl",
            tasks=list(config.tasks),
            metrics=metrics,
            primary={t: s.primary_metric for t, s in specs.items()},
            higher_is_better={t: s.higher_is_better for t, s in specs.items()},
            mean_weights=state.mean_weights(),
            selection="val" if best is not None else "last (no validation split)",
            meta=RunMeta(
                steps=state.step,
                best_step=state.best_step if best is not None else None,
                train_seconds=state.train_seconds,
                method_options=dict(config.method.options),
                arch=config.model.arch,
                backbone=config.model.backbone,
                dataset=config.data.name,
                dataset_info=dict(self.info.metadata),
                seed=config.seed,
                threads=config.threads,
                torch=torch.__version__,
                config_sha256=config_hash(config),
                # the same for every seed of a study arm: tells arms apart that differ outside the listed meta; like
                # the seed, the thread count perturbs the numbers but not the experiment (config_sha256 has both)
                arm_sha256=config_hash(config, ignore=(*DERIVED_KEYS, "seed", "name", "threads")),
                imbalance=summary,
            ).dump(),
        )
        save_run_result(self.result, self.run.results)
        self.logger.log_test(metrics)
