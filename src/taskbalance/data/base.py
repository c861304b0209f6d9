"""What every dataset shares: its description (:class:`DatasetInfo`), its errors, and the item pipeline.

A loader only knows how to read one *sample*: the image as float RGB in [0, 1] (3×H×W) plus the targets in the
conventions of :mod:`taskbalance.conventions` and ``meta``. :class:`MultiTaskDataset` turns samples into items:
optional label noise (fixed per sample), optional resizing, optional augmentation, then ImageNet normalisation.
Items are plain dicts whose ``meta`` is ``{"id": str, "scene": str, "view": int}``, so torch's default collate
batches them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from taskbalance.conventions import TASK_NAMES
from taskbalance.data.noise import LabelNoise, apply_label_noise
from taskbalance.data.rng import AugmentationRNG
from taskbalance.data.transforms import Augmentation, Sample, normalize, resize

__all__ = ["DataError", "DatasetInfo", "MultiTaskDataset", "check_tasks"]


class DataError(ValueError):
    """A problem with the data a user pointed us at (missing folder or file, corrupt file, bad option)."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset split, read by the tasks, models and results.

    Attributes:
        name: registry name (``synthetic``, ``nyud``, ``pascal``, ``replica``).
        tasks: the tasks the items carry, in canonical order.
        num_classes: class count of every classification task (``semseg``, ``human_parts``) of the dataset.
        edge_max_dist: BSDS matching tolerance (fraction of the image diagonal) for the edge task.
        has_val_split: whether a validation split distinct from the test split exists (model selection).
        metadata: facts to record in a run's result metadata (file layout, root, generation options).
    """

    name: str
    tasks: tuple[str, ...]
    num_classes: Mapping[str, int]
    edge_max_dist: float
    has_val_split: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)


def check_tasks(dataset: str, tasks: Sequence[str], available: Sequence[str]) -> tuple[str, ...]:
    """Validate requested task names against what ``dataset`` provides; return them in canonical order."""
    tasks = tuple(tasks)
    if not tasks:
        raise DataError(f"{dataset}: ask for at least one task (available: {', '.join(available)})")
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise DataError(f"{dataset} has no task {', '.join(map(repr, unknown))}; available: {', '.join(available)}")
    if len(set(tasks)) != len(tasks):
        raise DataError(f"{dataset}: tasks must be distinct, got {tasks}")
    return tuple(t for t in TASK_NAMES if t in tasks)


class MultiTaskDataset(Dataset):
    """Base class: subclasses set ``info`` and implement :meth:`__len__` and :meth:`load_sample`.

    Args:
        resolution: when set, every sample is first resized to this (H, W) (labels with nearest neighbour,
            depth values unchanged), so items of datasets with variable image sizes collate.
        augment: apply the paper's training augmentation (random scale 0.5-2.0, crop/pad back to the sample
            size, horizontal flip, colour jitter). ``True`` uses the defaults; pass an :class:`Augmentation`
            to change them.
        augment_seed: seed of the augmentation (default: ``torch.initial_seed()`` at construction). An item's
            augmentation is a function of this seed, the epoch (:meth:`set_epoch`) and its index only (see
            :mod:`.rng`), whatever the DataLoader workers, the loading order or a resumption.
        label_noise: corrupt the labels as in the paper's data-quality study (see :mod:`.noise`).
    """

    info: DatasetInfo

    def __init__(
        self,
        resolution: tuple[int, int] | None = None,
        augment: bool | Augmentation = False,
        augment_seed: int | None = None,
        label_noise: bool | LabelNoise | Mapping[str, Any] = False,
    ) -> None:
        if resolution is not None and (len(resolution) != 2 or min(resolution) < 1):
            raise DataError(f"resolution must be (H, W) with positive sizes, got {resolution}")
        self.resolution = None if resolution is None else (int(resolution[0]), int(resolution[1]))
        if augment is True:
            augment = Augmentation()
        self.augmentation: Augmentation | None = augment or None
        self._rng = AugmentationRNG(augment_seed)
        if label_noise is True:
            label_noise = LabelNoise()
        elif isinstance(label_noise, Mapping):
            label_noise = LabelNoise(**label_noise)
        self.label_noise: LabelNoise | None = label_noise or None

    def __len__(self) -> int:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of epoch ``epoch`` (like ``DistributedSampler.set_epoch``: call it before each
        epoch's DataLoader iterator is created, since workers copy the dataset then)."""
        self._rng.set_epoch(epoch)

    def load_sample(self, index: int) -> Sample:
        """The un-normalised sample ``index``: image float RGB in [0, 1], targets per conventions, meta."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        index %= len(self)
        sample = self.load_sample(index)
        if self.label_noise is not None:
            sample = apply_label_noise(sample, self.label_noise, self.info.num_classes.get("semseg", 0))
        if self.resolution is not None:
            sample = resize(sample, self.resolution)
        if self.augmentation is not None:
            sample = self.augmentation(sample, self._rng.generator(index))
        sample["image"] = normalize(sample["image"])
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.info.name!r}, tasks={self.info.tasks}, items={len(self)})"

