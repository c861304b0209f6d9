"""Running a benchmark preset: per-epoch training with a balancer, a test evaluation after *every* epoch (the
papers' protocol), the reporting rule over those evaluations, Δm, and the run's files.

A protocol run is a configuration of the loop core (:class:`~taskbalance.training.loop.Loop`): the preset's
model, balancer and Adam (halved per epoch when the preset says so) over its epochs, with the
:class:`~taskbalance.protocols.evaluation.EpochEvaluation` hook and, with an output folder, the
:class:`~taskbalance.training.hooks.Checkpointing` hook: a checkpoint after every epoch in ``<out>/checkpoints``
(holding the evaluations so far), from which ``resume=True`` continues exactly.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, Dataset

from taskbalance.atomic import atomic_write_text
from taskbalance.balancers import Balancer, create
from taskbalance.balancers.driver import StepOptions
from taskbalance.protocols.delta import best_epoch, last_epochs_mean, protocol_delta_m
from taskbalance.protocols.evaluation import EpochEvaluation
from taskbalance.protocols.presets import ProtocolPreset
from taskbalance.results import RunResult, save_run_result
from taskbalance.results.meta import ProtocolMeta
from taskbalance.tasks import TaskSpec
from taskbalance.training.batches import EpochBatchSampler
from taskbalance.training.config import OptimConfig
from taskbalance.training.epochs import EpochLoader
from taskbalance.training.hooks import Checkpointing, Hook
from taskbalance.training.loop import Loop, Schedule
from taskbalance.training.optim import build_optimizer
from taskbalance.training.state import seed_everything

#: Per-epoch metrics of a run, written next to ``results.json``.
HISTORY_FILENAME = "history.json"

Metrics = dict[str, dict[str, float]]


@dataclass(frozen=True)
class ProtocolOutcome:
    """What a run reports: the per-epoch test (and validation) metrics, the reported metrics, Δm and the result."""

    history: list[Metrics]
    validation: list[Metrics]
    reported: Metrics
    delta_m: float | None
    result: RunResult


def _primary_mean(metrics: Metrics, specs: Mapping[str, TaskSpec]) -> float:
    return sum(metrics[t][s.primary_metric] for t, s in specs.items()) / len(specs)


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def run_protocol(
    preset: ProtocolPreset,
    method: str = "uniform",
    method_options: Mapping[str, Any] | None = None,
    root: Path | None = None,
    out: Path | None = None,
    tasks: Sequence[str] | None = None,
    single_task: bool = False,
    baseline: Mapping[str, Mapping[str, float]] | None = None,
    seed: int = 0,
    device: str = "cpu",
    resume: bool = False,
) -> ProtocolOutcome:
    """Train ``preset`` with balancer ``method`` and report it as the papers do.

    Args:
        preset: from :func:`~taskbalance.protocols.presets.protocol_preset`.
        method, method_options: a balancer name of :func:`taskbalance.balancers.create` and its options.
        root: the dataset folder (real data; ignored by the CPU stand-ins).
        out: run directory for ``results.json`` and ``history.json`` (written atomically), or None.
        tasks: a subset of the dataset's tasks (default: all); ``single_task=True`` needs exactly one (STL run).
        baseline: single-task metrics (task → metric → value) replacing the preset's hard-coded ones for Δm.
        seed: seed of weights, batches and augmentation; device: ``cpu`` or ``cuda``.
        resume: continue the run in ``out`` from its last checkpoint (without one, or without ``resume``, the run
            starts anew and replaces the checkpoints of an earlier run in ``out``).
    """
    seed_everything(seed)
    target = torch.device(device)
    schedule, reporting = preset.schedule, preset.reporting
    train_set = preset.load("train", root, seed)
    test_set = preset.load("test", root, seed)
    val_set = preset.load("val", root, seed) if reporting.rule == "best_val" else None
    names = tuple(tasks) if tasks is not None else tuple(train_set.info.tasks)
    specs = {name: preset.task(name) for name in names}
    model = preset.model({t: s.out_channels for t, s in specs.items()}, single_task).to(target)
    balancer: Balancer = create(method, tasks=names, shared=model.shared_parameters(),
                                last_layer=model.last_shared_layer(), **dict(method_options or {})).to(target)
    optim = OptimConfig(optimizer="adam", lr=schedule.lr, weight_decay=schedule.weight_decay, schedule="constant",
                        epochs=schedule.epochs)
    optimizer = build_optimizer([{"params": list(model.parameters())},
                                 {"params": list(balancer.parameters()), "weight_decay": 0.0}], optim)
    scheduler = StepLR(optimizer, step_size=schedule.halve_at, gamma=0.5) if schedule.halve_at else None
    sampler = EpochBatchSampler(len(train_set), schedule.batch_size, seed)
    evaluation = EpochEvaluation(_loader(test_set, schedule.batch_size),
                                 _loader(val_set, schedule.batch_size) if val_set is not None else None)
    hooks: list[Hook] = [evaluation]
    checkpointing = Checkpointing(Path(out) / "checkpoints", seed=seed) if out is not None else None
    if checkpointing is not None:
        hooks.append(checkpointing)
    loop = Loop(model=model, balancer=balancer, optimizer=optimizer, specs=specs, device=target, hooks=hooks,
                step_options=StepOptions(scheduler=scheduler, schedule_per="epoch"),
                epochs=EpochLoader(train_set, sampler),  # the loader's base seed comes from the global RNG
                schedule=Schedule(schedule.epochs * len(sampler)))
    if checkpointing is not None and not (resume and checkpointing.restore()):
        shutil.rmtree(checkpointing.folder, ignore_errors=True)
    loop.run()
    history, validation = evaluation.history, evaluation.validation
    if reporting.rule == "best_val":
        selected = best_epoch([_primary_mean(m, specs) for m in validation])
        reported, selection = history[selected], f"test at the best validation epoch ({selected + 1})"
    else:
        reported, selection = last_epochs_mean(history, reporting.epochs), f"mean of the last {reporting.epochs} epochs"
    reference = baseline if baseline is not None else preset.baseline
    columns = preset.columns(names)
    delta = protocol_delta_m(reported, reference, columns) if reference is not None and not single_task else None
    result = RunResult(
        name=f"stl-{names[0]}" if single_task else method, method="stl" if single_task else method,
        kind="stl" if single_task else "mtl", tasks=list(names), metrics=reported,
        primary={t: s.primary_metric for t, s in specs.items()},
        higher_is_better={t: s.higher_is_better for t, s in specs.items()},
        mean_weights=loop.state.mean_weights(), selection=selection,
        meta=ProtocolMeta(protocol=preset.name, method_options=dict(method_options or {}), seed=seed,
                          epochs=schedule.epochs, delta_m_protocol=delta,
                          dataset_info=dict(train_set.info.metadata)).dump(),
    )
    if out is not None:
        save_run_result(result, out)
        history_text = json.dumps({"test": history, "val": validation}, indent=1) + "\n"
        atomic_write_text(Path(out) / HISTORY_FILENAME, history_text)
    return ProtocolOutcome(history, validation, reported, delta, result)
