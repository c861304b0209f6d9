"""Building what a run trains from its config: datasets, task specs, model, balancer, optimizer, schedule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from taskbalance.balancers import Balancer, create, get
from taskbalance.training.config import RunConfig
from taskbalance.training.optim import build_optimizer, build_scheduler

if TYPE_CHECKING:  # the builders import these packages on use (start-up stays light)
    from taskbalance.data.base import DatasetInfo, MultiTaskDataset
    from taskbalance.models.base import MultiTaskModel
    from taskbalance.tasks import TaskSpec


def build_split(config: RunConfig, split: str, train: bool) -> MultiTaskDataset:
    """One split of the configured dataset (training options and augmentation only for training)."""
    from taskbalance.data import build_dataset

    options: dict[str, Any] = dict(config.data.options)
    if train:
        options.update(config.data.train_options)
        options.setdefault("augment_seed", config.seed)  # augmentation follows the run's seed
    return build_dataset(config.data.name, split=split, tasks=config.tasks, root=config.data.root,
                         augment=config.data.augment and train, **options)


def build_specs(config: RunConfig, info: DatasetInfo, exact_edge: bool = False) -> dict[str, TaskSpec]:
    """The task specs (losses, meters) of the run's tasks, sized from the dataset info."""
    from taskbalance.tasks import build_task

    specs = {}
    for task in config.tasks:
        kwargs: dict[str, Any] = {}
        if task in ("semseg", "human_parts") and task in info.num_classes:
            kwargs["num_classes"] = info.num_classes[task]
        if task == "edge":
            kwargs.update(exact_odsf=exact_edge, max_dist=info.edge_max_dist)
        kwargs.update(config.task_options.get(task, {}))
        specs[task] = build_task(task, **kwargs)
    return specs


def task_channels(config: RunConfig, info: DatasetInfo) -> dict[str, int]:
    """Output channels per task for the model."""
    return {task: spec.out_channels for task, spec in build_specs(config, info).items()}


def build_model_for(config: RunConfig, info: DatasetInfo) -> MultiTaskModel:
    """The configured model, its heads sized from the dataset ``info``."""
    from taskbalance.models import build_model

    return build_model(
        arch=config.model.arch,
        backbone=config.model.backbone,
        task_channels=task_channels(config, info),
        pretrained=config.model.pretrained,
        single_task=config.single_task,
        **config.model.options,
    )


def build_balancer(config: RunConfig, model: MultiTaskModel) -> Balancer:
    """The configured balancer over the model's shared parameters and last shared layer."""
    kwargs: dict[str, Any] = dict(config.method.options)
    if config.method.source is not None:
        kwargs["source"] = config.method.source
    if config.method.head_gradients is not None:
        kwargs["head_gradients"] = config.method.head_gradients
    if "seed" in get(config.method.name).Options.model_fields:
        kwargs.setdefault("seed", config.seed)  # a randomised method draws from the run's seed unless told otherwise
    return create(config.method.name, tasks=config.tasks, shared=list(model.shared_parameters()),
                  last_layer=model.last_shared_layer(), **kwargs)


@dataclass
class Optimization:
    """The optimizer over model, balancer and (URL) adaptor parameters, and its schedule."""

    optimizer: Optimizer
    scheduler: LambdaLR


def build_optimization(config: RunConfig, model: nn.Module, balancer: Balancer, extra: Mapping[str, nn.Module],
                       total_steps: int) -> Optimization:
    """Parameter groups: the model; the balancer's learnable parameters (no weight decay); URL adaptors with their
    own learning rate and weight decay."""
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if p.requires_grad]},
        {"params": list(balancer.parameters()), "weight_decay": 0.0},
    ]
    if "aligner" in extra and config.distill is not None:
        groups.append({"params": list(extra["aligner"].parameters()), "lr": config.distill.adaptor_lr,
                       "weight_decay": config.distill.adaptor_weight_decay})
    optimizer = build_optimizer(groups, config.optim)
    return Optimization(optimizer, build_scheduler(optimizer, config.optim, total_steps))


def resolve_device(config: RunConfig, local_rank: int = 0) -> torch.device:
    """The device to train on (``auto``: the GPU when there is one)."""
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda was requested but no GPU is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")
