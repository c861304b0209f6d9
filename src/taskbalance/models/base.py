"""The model contract: :class:`MultiTaskModel` and what one training forward returns (:class:`ModelOutput`).

Every architecture keeps its modules in two places:

* ``self.shared``: an ``nn.ModuleDict`` holding the backbone (key ``"backbone"``) and every module that more than
  one task's loss reaches (cross-task modules such as MTI-Net's FPM or InvPT's joint transformer);
* ``self.task_specific``: an ``nn.ModuleDict`` mapping each task to the modules only that task's losses
  (final and deep-supervision) reach.

So :meth:`MultiTaskModel.shared_parameters` and the :meth:`MultiTaskModel.task_parameters` of all tasks partition
``model.parameters()`` by construction. ``ModelOutput.features`` are *taps*: aliases of the shared tensors made at
the point where the task-specific part reads them (:func:`tap`). The shared computation never reads a tap, so no
tap depends on another one and every path from a shared parameter to an output goes through exactly one tap; the
balancer engine can therefore take per-task gradients on them and back-propagate their combination once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

from taskbalance.models.backbones import Backbone
from taskbalance.models.errors import ModelError as ModelError  # defined below the backbones, raised from here on

_M = TypeVar("_M", bound=nn.Module)


@dataclass
class ModelOutput:
    """What :meth:`MultiTaskModel.forward_train` returns.

    ``predictions``: task → B×C×H×W raw output at input resolution. ``auxiliary``: task → deep-supervision
    predictions at input resolution (empty for architectures without deep supervision). ``features``: the shared
    tensors the task-specific part reads (see the module docstring).
    """

    predictions: dict[str, Tensor]
    auxiliary: dict[str, list[Tensor]] = field(default_factory=dict)
    features: list[Tensor] = field(default_factory=list)


def tap(x: Tensor, taps: list[Tensor]) -> Tensor:
    """Return an alias of the shared tensor ``x`` for the task-specific part to read, and record it in ``taps``.

    The alias is its own autograd node: the gradient of a loss with respect to it counts only the task-specific
    paths, never the shared computation that continues from ``x``. Heads must not modify a tap in place.
    """
    alias = x.view_as(x)
    taps.append(alias)
    return alias


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize of a B×C×h×w map to ``size`` (the upsampling every reference head ends with)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def as_type(module: object, cls: type[_M]) -> _M:
    """``module`` narrowed to ``cls`` (an ``nn.ModuleDict`` or ``nn.ModuleList`` returns its items as plain
    ``nn.Module``s); a module of another class is a programming error (TypeError)."""
    if not isinstance(module, cls):
        raise TypeError(f"expected a {cls.__name__}, got a {type(module).__name__}")
    return module


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of (distinct) parameters of ``module``; ``trainable_only`` counts those requiring grad."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class MultiTaskModel(nn.Module, ABC):
    """Base of every architecture: images → per-task predictions at input resolution.

    Subclasses fill ``self.shared`` (with the backbone under ``"backbone"``) and ``self.task_specific`` and
    implement :meth:`_forward`, which receives images whose size is a multiple of ``size_divisor`` (the input is
    zero-padded on the bottom/right as the reference code's ``PadImage`` does, and the outputs cropped back).
    """

    def __init__(self, tasks: Sequence[str], *, single_task: bool, size_divisor: int) -> None:
        super().__init__()
        self.tasks: tuple[str, ...] = tuple(tasks)
        self.single_task = single_task
        self.size_divisor = size_divisor
        self.shared = nn.ModuleDict()
        self.task_specific = nn.ModuleDict({task: nn.ModuleDict() for task in self.tasks})

    @property
    def backbone(self) -> Backbone:
        """The shared backbone."""
        backbone = self.shared["backbone"]
        assert isinstance(backbone, Backbone)
        return backbone

    @abstractmethod
    def _forward(self, images: Tensor) -> ModelOutput:
        """Forward on padded images; predictions at the padded size."""

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Final predictions per task (B×C×H×W at input resolution)."""
        return self.forward_train(images).predictions

    def forward_train(self, images: Tensor) -> ModelOutput:
        """Predictions, deep-supervision predictions and the shared feature taps for one image batch."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ModelError(f"expected images of shape B×3×H×W, got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % self.size_divisor, -width % self.size_divisor
        padded = F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images
        out = self._forward(padded)
        if pad_h or pad_w:
            out.predictions = {t: p[..., :height, :width] for t, p in out.predictions.items()}
            out.auxiliary = {t: [a[..., :height, :width] for a in aux] for t, aux in out.auxiliary.items()}
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that more than one task's loss reaches (backbone and cross-task modules)."""
        return list(self.shared.parameters())

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters only ``task``'s losses reach."""
        if task not in self.task_specific:
            raise ModelError(f"unknown task {task!r}; this model predicts {list(self.tasks)}")
        return list(self.task_specific[task].parameters())

    def task_modules(self, task: str) -> nn.ModuleDict:
        """The modules only ``task``'s losses reach (``self.task_specific[task]``)."""
        return as_type(self.task_specific[task], nn.ModuleDict)

    def last_shared_layer(self) -> nn.Module:
        """The last layer of the shared backbone (the ``W`` of GradNorm and AvgNorm)."""
        return self.backbone.last_layer()
