"""Running a benchmark preset: per-epoch training with a balancer, a test evaluation after *every* epoch (the
papers' protocol), the reporting rule over those evaluations, Δm, and the run's files.

The study's :class:`~taskbalance.training.Trainer` cannot express these runs yet (its config accepts only the dense
task names and datasets, builds timm-backbone models, has no step schedule, and evaluates the test split once on the
selected checkpoint), so this module drives the same pieces — balancers, :func:`task_losses`, :func:`evaluate`,
:class:`EpochBatchSampler`, ``RunResult`` — with the protocol's epoch structure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, Dataset

from taskbalance.balancers import Balancer, create
from taskbalance.balancers.driver import Forward, StepDriver, StepOptions
from taskbalance.protocols.delta import best_epoch, last_epochs_mean, protocol_delta_m
from taskbalance.protocols.presets import ProtocolPreset
from taskbalance.results import RunResult, save_run_result
from taskbalance.atomic import atomic_write_text
from taskbalance.tasks import TaskSpec
from taskbalance.training.batches import EpochBatchSampler, to_device
from taskbalance.training.config import OptimConfig
from taskbalance.training.evaluate import evaluate, task_losses
from taskbalance.training.loop import seed_everything
from taskbalance.training.optim import build_optimizer

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


def _forward(model: torch.nn.Module, specs: Mapping[str, TaskSpec], batch: Mapping[str, Any]) -> Forward:
    output = model.forward_train(batch["image"])
    return Forward(task_losses(specs, output, batch), output.features)


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
    """
    seed_everything(seed)
    target = torch.device(device)
    schedule, reporting = preset.schedule, preset.reporting
    train_set = preset.load("train", root, seed)
    test_set = preset.load("test", root, seed)
    val_set = preset.load("val", root, seed) if reporting.rule == "best_val" else None
    names = tuple(tasks) if tasks is not None else tuple(train_set.info.tasks)  # type: ignore[attr-defined]
    specs = {name: preset.task(name) for name in names}
    model = preset.model({t: s.out_channels for t, s in specs.items()}, single_task).to(target)
    balancer: Balancer = create(method, tasks=names, shared=model.shared_parameters(), last_layer=model.last_shared_layer(),
                                **dict(method_options or {})).to(target)
    optim = OptimConfig(optimizer="adam", lr=schedule.lr, weight_decay=schedule.weight_decay, schedule="constant", epochs=schedule.epochs)
    optimizer = build_optimizer([{"params": list(model.parameters())},
                                 {"params": list(balancer.parameters()), "weight_decay": 0.0}], optim)
    scheduler = StepLR(optimizer, step_size=schedule.halve_at, gamma=0.5) if schedule.halve_at else None
    driver = StepDriver.for_balancer(balancer, optimizer, StepOptions(scheduler=scheduler, schedule_per="epoch"))
    sampler = EpochBatchSampler(len(train_set), schedule.batch_size, seed)  # type: ignore[arg-type]
    history: list[Metrics] = []
    validation: list[Metrics] = []
    weight_sums = dict.fromkeys(names, 0.0)
    steps = 0
    for epoch in range(schedule.epochs):
        model.train()
        sampler.set_position(epoch)
        for batch in DataLoader(train_set, batch_sampler=sampler):
            step = driver.step(partial(_forward, model, specs, to_device(batch, target)))
            for task, weight in step.weights.items():
                weight_sums[task] += weight
            steps += 1
        driver.epoch_end()
        history.append(evaluate(model, _loader(test_set, schedule.batch_size), specs, target))
        if val_set is not None:
            validation.append(evaluate(model, _loader(val_set, schedule.batch_size), specs, target))
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
        mean_weights={t: v / max(steps, 1) for t, v in weight_sums.items()}, selection=selection,
        meta={"protocol": preset.name, "method_options": dict(method_options or {}), "seed": seed, "epochs": schedule.epochs,
              "delta_m_protocol": delta, "dataset_info": dict(train_set.info.metadata)},  # type: ignore[attr-defined]
    )
    if out is not None:
        save_run_result(result, out)
        atomic_write_text(Path(out) / HISTORY_FILENAME, json.dumps({"test": history, "val": validation}, indent=1) + "\n")
    return ProtocolOutcome(history, validation, reported, delta, result)
