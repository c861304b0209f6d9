"""Datasets stored as files: a :class:`FolderReader` knows one on-disk layout, :class:`FolderDataset` serves it.

A reader maps a sample id and a *key* (``image`` or a task name) to the files it reads (``paths``) and to the
decoded tensor (``read``); decoding validates content (value ranges, shapes) and raises :class:`DataError`
naming the file. The same reader drives the dataset and ``taskbalance data check``, so the checker reports
exactly what the loader would refuse.

The dataset checks at construction that the root, the split file and every file of every sample exist (a
missing file is listed, not skipped), and at load time that all targets match the image size, so a bad
file stops the epoch with its name instead of shifting labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from taskbalance.data.base import DataError, DatasetInfo, MultiTaskDataset, check_tasks
from taskbalance.data.io import require_dir, require_file
from taskbalance.data.transforms import Augmentation, Sample

__all__ = ["FolderDataset", "FolderReader"]


class FolderReader(ABC):
    """One on-disk layout of one dataset, rooted at ``root`` (never written to)."""

    name: ClassVar[str]
    #: Tasks the layout provides, in canonical order.
    tasks: ClassVar[tuple[str, ...]]
    #: Our split name → split file, relative to the root.
    split_files: ClassVar[dict[str, str]]
    #: BSDS edge-matching tolerance (fraction of the image diagonal) of the dataset's protocol.
    edge_max_dist: ClassVar[float] = 0.011
    #: Whether a validation split distinct from the test split exists.
    has_val_split: ClassVar[bool] = False

    def __init__(self, root: Path | str) -> None:
        self.root = require_dir(Path(root).expanduser(), f"{self.name} dataset root")

    @property
    def layout(self) -> str:
        """Name of the on-disk variant (recorded in run metadata)."""
        return self.name

    def split_path(self, split: str) -> Path:
        """The split file of ``split`` (a clear error for a split this dataset does not have)."""
        if split not in self.split_files:
            raise DataError(f"{self.name} has no split {split!r}; available: {', '.join(self.split_files)}")
        return self.root / self.split_files[split]

    def ids(self, split: str) -> list[str]:
        """Sample ids of ``split``, as listed in its split file."""
        path = require_file(self.split_path(split), f"{self.name} split file for {split!r}")
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not ids:
            raise DataError(f"split file {path} lists no samples")
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
        if duplicates:
            raise DataError(f"split file {path} lists ids more than once: {duplicates[:5]}")
        return ids

    def scene_view(self, sample_id: str) -> tuple[str, int]:
        """(scene, view) of a sample for ``meta``; datasets without scenes use (id, 0)."""
        return sample_id, 0

    @abstractmethod
    def paths(self, sample_id: str, key: str) -> list[Path]:
        """Files that reading ``key`` of ``sample_id`` needs (all must exist)."""

    @abstractmethod
    def read(self, sample_id: str, key: str) -> torch.Tensor:
        """Decode ``key`` (``image`` or a task) of ``sample_id``; :class:`DataError` naming the file when bad."""

    def num_classes(self) -> dict[str, int]:
        """Class count of the classification tasks of this layout."""
        return {}


class FolderDataset(MultiTaskDataset):
    """A split of a :class:`FolderReader`'s dataset as multi-task items."""

    def __init__(
        self,
        reader: FolderReader,
        split: str,
        tasks: Sequence[str] | None = None,
        resolution: tuple[int, int] | None = None,
        augment: bool | Augmentation = False,
        augment_seed: int | None = None,
        label_noise: Any = False,
    ) -> None:
        super().__init__(resolution=resolution, augment=augment, augment_seed=augment_seed, label_noise=label_noise)
        self.reader = reader
        self.split = split
        self.tasks = check_tasks(reader.name, tasks or reader.tasks, reader.tasks)
        self.ids = self.select(reader.ids(split))
        missing = [
            str(p) for i in self.ids for key in ("image", *self.tasks) for p in reader.paths(i, key) if not p.is_file()
        ]
        if missing:
            shown = "\n  ".join(missing[:10]) + (f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise DataError(
                f"{reader.name} {split!r}: {len(missing)} file(s) listed by {reader.split_path(split)} "
                f"are missing:\n  {shown}\n"
                f"Restore them, or run `taskbalance data check {reader.root} --dataset {reader.name}` "
                "for a full report."
            )
        self.info = DatasetInfo(
            name=reader.name,
            tasks=self.tasks,
            num_classes=reader.num_classes(),
            edge_max_dist=reader.edge_max_dist,
            has_val_split=reader.has_val_split,
            metadata={"layout": reader.layout, "root": str(reader.root), "split": split},
        )

    def select(self, ids: list[str]) -> list[str]:
        """Hook for subclasses that subset the split (Replica's data-quantity options)."""
        return ids

    def __len__(self) -> int:
        return len(self.ids)

    def load_sample(self, index: int) -> Sample:
        sample_id = self.ids[index]
        sample: Sample = {"image": self.reader.read(sample_id, "image")}
        size = tuple(sample["image"].shape[-2:])
        for task in self.tasks:
            target = self.reader.read(sample_id, task)
            if tuple(target.shape[-2:]) != size:
                files = ", ".join(map(str, self.reader.paths(sample_id, task)))
                raise DataError(
                    f"{files}: {task} is {tuple(target.shape[-2:])} but the image is {size}; "
                    f"the files of sample {sample_id!r} do not belong together"
                )
            sample[task] = target
        scene, view = self.reader.scene_view(sample_id)
        sample["meta"] = {"id": sample_id, "scene": scene, "view": view}
        return sample
