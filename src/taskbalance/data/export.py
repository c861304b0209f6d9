"""Write the synthetic scenes in a real dataset's on-disk layout, so real loaders run end to end on files.

Layouts: ``nyud`` (NYUD_MT: .jpg images, .npy depth/normals/edges), ``nyudv2`` (NYUDv2: .png images,
normals and edges) and ``pascal`` (PASCAL_MT; the synthetic object parts become PASCAL-Part person parts,
the class map becomes the Context ``LabelMap``). The synthetic ``train`` split becomes the layout's train
list and ``test`` its test list (NYUD ``gt_sets/val.txt``, PASCAL ``ImageSets/Context/val.txt``).
The output folder must be new or empty; every file is written atomically, and the split lists last, so an
interrupted export is visibly incomplete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from taskbalance.data.base import DataError
from taskbalance.data.io import save_image, save_mat, save_npy, save_text
from taskbalance.data.layouts import EXPORT_LAYOUTS
from taskbalance.data.pascal import PERSON_CLASS
from taskbalance.data.synthetic.dataset import SyntheticDataset, describe_synthetic
from taskbalance.data.transforms import Sample

__all__ = ["EXPORT_LAYOUTS", "ExportSummary", "export_synthetic"]

Layout = Literal["nyud", "nyudv2", "pascal"]
#: One PASCAL-Part name per part group, used to store synthetic parts as person parts.
_PART_NAMES = {1: "head", 2: "torso", 3: "luarm", 4: "llarm", 5: "luleg", 6: "llleg"}


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: the folder, the layout and the number of samples per split file."""

    out: Path
    layout: str
    samples: dict[str, int]


def _uint8(values: torch.Tensor) -> np.ndarray:
    return values.mul(255.0).round().clamp(0, 255).to(torch.uint8).numpy()


def _rgb(sample: Sample) -> np.ndarray:
    return _uint8(sample["image"].permute(1, 2, 0))


def _normals_png(sample: Sample) -> np.ndarray:
    return _uint8((sample["normals"].permute(1, 2, 0) + 1.0) / 2.0)


def _write_nyud(root: Path, sample: Sample, png: bool) -> None:
    name = sample["meta"]["id"]
    save_image(_rgb(sample), root / "images" / f"{name}{'.png' if png else '.jpg'}", **({} if png else {"quality": 95}))
    save_image((sample["semseg"] + 1).to(torch.uint8).numpy(), root / "segmentation" / f"{name}.png")
    save_npy(sample["depth"][0].numpy(), root / "depth" / f"{name}.npy")
    if png:
        save_image(_normals_png(sample), root / "normals" / f"{name}.png")
        save_image(_uint8(sample["edge"][0]), root / "edge" / f"{name}.png")
    else:
        save_npy(sample["normals"].permute(1, 2, 0).contiguous().numpy(), root / "normals" / f"{name}.npy")
        save_npy(sample["edge"][0].numpy(), root / "edge" / f"{name}.npy")


def _part_struct(sample: Sample) -> np.ndarray:
    """A PASCAL-Part ``anno`` struct: one person object holding every synthetic part (none without parts)."""
    parts = sample["human_parts"].numpy()
    present = [int(p) for p in np.unique(parts) if p in _PART_NAMES]
    part_array = np.zeros((1, len(present)), dtype=[("part_name", "O"), ("mask", "O")])
    for column, part in enumerate(present):
        part_array[0, column] = (_PART_NAMES[part], (parts == part).astype(np.uint8))
    objects = np.zeros(
        (1, 1 if present else 0), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    )
    if present:
        objects[0, 0] = ("person", np.array([[PERSON_CLASS]]), (parts > 0).astype(np.uint8), part_array)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (sample["meta"]["id"], objects)
    return anno


def _write_pascal(root: Path, sample: Sample) -> None:
    name = sample["meta"]["id"]
    save_image(_rgb(sample), root / "JPEGImages" / f"{name}.jpg", quality=95)
    save_image(sample["semseg"].to(torch.uint8).numpy(), root / "semseg" / "VOC12" / f"{name}.png")
    save_mat(
        {"LabelMap": (sample["semseg"] + 1).to(torch.int32).numpy().astype(np.uint16)},
        root / "pascal-context" / "trainval" / f"{name}.mat",
    )
    save_mat({"anno": _part_struct(sample)}, root / "human_parts" / f"{name}.mat")
    save_image(_normals_png(sample), root / "normals_distill" / f"{name}.png")
    save_image(_uint8(sample["sal"][0]), root / "sal_distill" / f"{name}.png")


_WRITERS: dict[str, tuple[Callable[[Path, Sample], None], dict[str, str]]] = {
    "nyud": (
        lambda root, s: _write_nyud(root, s, png=False),
        {"train": "gt_sets/train.txt", "test": "gt_sets/val.txt"},
    ),
    "nyudv2": (
        lambda root, s: _write_nyud(root, s, png=True),
        {"train": "gt_sets/train.txt", "test": "gt_sets/val.txt"},
    ),
    "pascal": (_write_pascal, {"train": "ImageSets/Context/train.txt", "test": "ImageSets/Context/val.txt"}),
}


def export_synthetic(
    out: Path | str,
    layout: Layout,
    progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> ExportSummary:
    """Write the synthetic ``train`` and ``test`` splits to ``out`` in ``layout``.

    Args:
        out: a new or empty folder.
        layout: ``nyud``, ``nyudv2`` or ``pascal``.
        progress: called as ``progress(stage, done, total)`` when a split starts rendering (``render train``)
            and after every sample written (``write train``); ``total`` counts the samples of both splits.
        **options: synthetic dataset options (``num_scenes``, ``views_per_scene``, ``resolution``, ``seed``).
    """
    if layout not in _WRITERS:
        raise DataError(f"unknown export layout {layout!r}; available: {', '.join(EXPORT_LAYOUTS)}")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"refusing to export into {out}: it exists and is not an empty folder; choose a new --out")
    write, split_files = _WRITERS[layout]
    report = progress or (lambda stage, done, total: None)
    total = sum(describe_synthetic(split, **options)[1] for split in split_files)  # known before rendering
    done = 0
    ids: dict[str, list[str]] = {}
    for split in split_files:
        report(f"render {split}", done, total)
        dataset = SyntheticDataset(split, **options)
        ids[split] = []
        for index in range(len(dataset)):
            sample = dataset.load_sample(index)
            write(out, sample)
            ids[split].append(sample["meta"]["id"])
            done += 1
            report(f"write {split}", done, total)
    for split, names in ids.items():
        save_text("\n".join(names) + "\n", out / split_files[split])
    return ExportSummary(out, layout, {split_files[s]: len(names) for s, names in ids.items()})
