"""URL (Li, Liu, Bilen; methods.md 3.14): distillation from frozen single-task teachers through adaptors.

For every task ``t`` with a teacher, each student feature ``f_l`` (the shared tensors the heads read) goes through a
bias-free 1×1 adaptor ``A_{t,l}``, is resized to the teacher's last feature and L2-normalised over channels;
the distance is ``Σ_l mean_{b,pixels} ‖n(up(A_{t,l} f_l)) − n(f^T_t)‖²`` (sum over channels).

* ``distill`` mode (the URL method): task ``t``'s loss becomes ``L_t + λ_t · dist_t``; the adaptors train with the
  student (their own learning rate and weight decay, official 1e-2 / 5e-4).
* ``measure`` mode (the paper's Fig. 6 diagnostic): the student features are detached, so the adaptors learn the
  best alignment while the student is untouched; ``dist_t`` is the feature distance to the single-task model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskbalance.training.checkpoint import find_checkpoint, load_weights
from taskbalance.training.components import build_model_for
from taskbalance.training.presets import load_config

if TYPE_CHECKING:
    from taskbalance.models.base import MultiTaskModel


def load_teacher(run_dir: Path, device: torch.device, info: Any) -> MultiTaskModel:
    """The selected (best, else last) single-task model of a run directory, frozen in eval mode (``info``: the
    dataset info the student trains on, which sizes the teacher's head)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"teacher {run_dir} is not a run directory (no config.yaml)")
    config = load_config(run_dir / "config.yaml")
    if not config.single_task:
        raise ValueError(f"teacher {run_dir} is not a single-task run")
    checkpoint = find_checkpoint(run_dir / "checkpoints", "best") or find_checkpoint(run_dir / "checkpoints", "last")
    if checkpoint is None:
        raise FileNotFoundError(f"teacher {run_dir} has no checkpoint: train it first")
    model = build_model_for(config, info).to(device)
    load_weights(model, checkpoint, device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def total(terms: Iterable[Tensor]) -> Tensor:
    """``sum(terms)`` of a non-empty iterable (0 + t1 + t2 + ..., as Python's ``sum``), typed as the tensor it is."""
    result = sum(terms)
    assert isinstance(result, Tensor), "no terms to sum"
    return result


def feature_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean over batch and pixels of the squared L2 distance between channel-normalised feature maps."""
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
    diff = F.normalize(student, dim=1, eps=1e-12) - F.normalize(teacher, dim=1, eps=1e-12)
    return diff.pow(2).sum(dim=1).mean()


class FeatureAligner(nn.Module):
    """Frozen teachers plus per-task adaptors; :meth:`distances` gives ``dist_t`` for every task with a teacher."""

    def __init__(
        self,
        teachers: Mapping[str, MultiTaskModel],
        student_channels: Sequence[int],
        teacher_channels: Mapping[str, int],
        detach_student: bool,
    ) -> None:
        super().__init__()
        self.teachers = dict(teachers)  # not submodules: frozen, loaded from their own runs, never checkpointed here
        self.detach_student = detach_student
        self.adaptors = nn.ModuleDict(
            {
                task: nn.ModuleList(
                    nn.Conv2d(c, teacher_channels[task], kernel_size=1, bias=False) for c in student_channels
                )
                for task in teachers
            }
        )
        for conv in self.adaptors.modules():
            if isinstance(conv, nn.Conv2d):
                nn.init.xavier_normal_(conv.weight)

    @classmethod
    def build(
        cls, teachers: Mapping[str, MultiTaskModel], student: MultiTaskModel, images: Tensor, detach_student: bool
    ) -> FeatureAligner:
        """Size the adaptors from one forward pass of the student and the teachers on ``images``."""
        with torch.no_grad():
            student_channels = [f.shape[1] for f in student.forward_train(images).features]
            teacher_channels = {t: m.forward_train(images).features[-1].shape[1] for t, m in teachers.items()}
        return cls(teachers, student_channels, teacher_channels, detach_student).to(images.device)

    def distances(self, images: Tensor, student_features: Sequence[Tensor]) -> dict[str, Tensor]:
        """``dist_t`` per task (scalars; differentiable w.r.t. the adaptors, and the student unless detached)."""
        features = [f.detach() if self.detach_student else f for f in student_features]
        result = {}
        for task, teacher in self.teachers.items():
            with torch.no_grad():
                target = teacher.forward_train(images).features[-1].float()
            adaptors = self.adaptors[task]
            assert isinstance(adaptors, nn.ModuleList)
            result[task] = total(feature_distance(a(f.float()), target) for a, f in zip(adaptors, features))
        return result
