"""``build_dataset``: one entry point for every dataset, with option errors that list what is accepted.

Each dataset's builder is registered explicitly with :func:`register_dataset` (see :mod:`taskbalance.registration`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from taskbalance.data.base import DataError, MultiTaskDataset
from taskbalance.data.folder import FolderDataset
from taskbalance.data.nyud import NYUDReader
from taskbalance.data.pascal import PascalDataset, PascalReader
from taskbalance.data.replica import ReplicaDataset, ReplicaOptions, ReplicaReader
from taskbalance.data.synthetic.dataset import SyntheticDataset
from taskbalance.data.transforms import Augmentation
from taskbalance.registration import Registry

__all__ = ["DATASETS", "available_datasets", "build_dataset", "register_dataset"]

Builder = Callable[..., MultiTaskDataset]
#: Dataset name → its builder ``(split, tasks, root, augment, **options)``.
DATASETS: Registry[Builder] = Registry("dataset", DataError)
#: Decorator registering a dataset builder: ``@register_dataset("nyud")``.
register_dataset = DATASETS.register


def _require_root(name: str, root: Path | str | None, expected: str) -> Path:
    if root is None:
        raise DataError(f"{name} is read from disk: pass root= (the folder holding {expected}); nothing is downloaded")
    return Path(root)


@register_dataset("synthetic")
def _synthetic(
    split: str, tasks: Sequence[str] | None, root: Path | str | None, augment: bool | Augmentation, **options: Any
) -> MultiTaskDataset:
    if root is not None:
        raise DataError(
            "the synthetic dataset is generated in memory; do not pass root (use `data export` to write it)"
        )
    return SyntheticDataset(split, tasks, augment=augment, **options)


@register_dataset("nyud")
def _nyud(
    split: str,
    tasks: Sequence[str] | None,
    root: Path | str | None,
    augment: bool | Augmentation,
    layout: str | None = None,
    resolution: tuple[int, int] | None = None,
    augment_seed: int | None = None,
) -> MultiTaskDataset:
    reader = NYUDReader(
        _require_root("nyud", root, "images/, segmentation/, depth/, normals/, edge/, gt_sets/"), layout
    )
    return FolderDataset(reader, split, tasks, resolution=resolution, augment=augment, augment_seed=augment_seed)


@register_dataset("pascal")
def _pascal(
    split: str,
    tasks: Sequence[str] | None,
    root: Path | str | None,
    augment: bool | Augmentation,
    resolution: tuple[int, int] | None = (512, 512),
    normals_valid_labels: Sequence[int] | None = None,
    augment_seed: int | None = None,
) -> MultiTaskDataset:
    reader = PascalReader(
        _require_root("pascal", root, "JPEGImages/, ImageSets/Context/, semseg/, ..."), normals_valid_labels
    )
    return PascalDataset(reader, split, tasks, resolution=resolution, augment=augment, augment_seed=augment_seed)


@register_dataset("replica")
def _replica(
    split: str,
    tasks: Sequence[str] | None,
    root: Path | str | None,
    augment: bool | Augmentation,
    resolution: tuple[int, int] | None = None,
    scene_subset: int | float | Sequence[str] | None = None,
    scans_per_scene: int | float | None = None,
    seed: int = 0,
    label_noise: Any = False,
    augment_seed: int | None = None,
    **layout: Any,
) -> MultiTaskDataset:
    try:
        layout_options = ReplicaOptions(**layout)
    except ValidationError as error:
        raise DataError(f"replica: invalid options: {error}") from None
    reader = ReplicaReader(
        _require_root("replica", root, "rgb/, semantic/, depth_zbuffer/, normal/, splits/"), layout_options
    )
    return ReplicaDataset(
        reader,
        split,
        tasks,
        scene_subset=scene_subset,
        scans_per_scene=scans_per_scene,
        subset_seed=seed,
        resolution=resolution,
        augment=augment,
        augment_seed=augment_seed,
        label_noise=label_noise,
    )


def available_datasets() -> tuple[str, ...]:
    """Names accepted by :func:`build_dataset`."""
    return tuple(DATASETS)


def build_dataset(
    name: str,
    split: str = "train",
    tasks: Sequence[str] | None = None,
    root: Path | str | None = None,
    augment: bool | Augmentation = False,
    **options: Any,
) -> MultiTaskDataset:
    """Build a split of a dataset; ``ds.info`` describes it and ``ds[i]`` is an item (conventions.py).

    Args:
        name: ``synthetic``, ``nyud``, ``pascal`` or ``replica``.
        split: ``train``, ``val`` (synthetic and replica only) or ``test``.
        tasks: task names (default: every task the dataset has).
        root: dataset folder (real datasets); never written to.
        augment: the paper's training augmentation (True, or an :class:`Augmentation`).
        **options: dataset options (``docs/contracts.md``); unknown ones raise :class:`DataError`.
    """
    builder = DATASETS.lookup(name)
    try:
        inspect.signature(builder).bind(split, tasks, root, augment, **options)
    except TypeError as error:
        accepted = [p for p in inspect.signature(builder).parameters if p not in ("split", "tasks", "root", "augment")]
        raise DataError(f"{name}: {error}; accepted options: {', '.join(accepted)}") from None
    return builder(split, tasks, root, augment, **options)
