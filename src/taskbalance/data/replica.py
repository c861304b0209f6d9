"""Replica as Omnidata renders it: semantic segmentation, depth and normals, many views per scene.

Expected layout (folder names configurable through :class:`ReplicaOptions`)::

    ROOT/rgb/replica/<scene>/point_<p>_view_<v>_domain_rgb.png
    ROOT/depth_zbuffer/replica/<scene>/point_<p>_view_<v>_domain_depth_zbuffer.png   16-bit, 1/512 m, 65535 invalid
    ROOT/normal/replica/<scene>/point_<p>_view_<v>_domain_normal.png                 RGB, (n+1)·255/2
    ROOT/semantic/replica/<scene>/point_<p>_view_<v>_domain_semantic.png             class ids
    ROOT/splits/{train,val,test}.txt                                                  scene names, one per line

Every view found under ``rgb/replica/<scene>`` for the split's scenes is a sample; ``meta`` carries the scene
and the view's position within it. The paper's data-quantity (``scans_per_scene``, ``scene_subset``) and
data-quality (``label_noise``) settings apply as for the synthetic dataset. Conventions differ between
exports, so the depth scale, invalid value, semantic ids to ignore, class count and the signs that bring the
normals into our camera frame (x right, y down, z forward) are options; check a few samples before trusting
the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from taskbalance.data.base import DataError
from taskbalance.data.decode import decode_depth, decode_labels, decode_normals
from taskbalance.data.folder import FolderDataset, FolderReader
from taskbalance.data.io import read_png_array, read_rgb, require_dir
from taskbalance.data.subsets import Amount, select_scenes, select_views

__all__ = ["ReplicaDataset", "ReplicaOptions", "ReplicaReader"]

_VIEW = re.compile(r"point_(\d+)_view_(\d+)_domain_")


class ReplicaOptions(BaseModel):
    """How a Replica export is stored (defaults: Omnidata's conventions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domains: dict[str, str] = {"image": "rgb", "semseg": "semantic", "depth": "depth_zbuffer", "normals": "normal"}
    dataset_folder: str = "replica"
    split_dir: str = "splits"
    num_classes: int = Field(101, ge=2)
    ignore_labels: tuple[int, ...] = (0,)
    semseg_offset: int = 0
    depth_scale: float = Field(1.0 / 512.0, gt=0, description="metres per stored unit")
    depth_invalid: float | None = 65535.0
    normal_signs: tuple[float, float, float] = (1.0, 1.0, 1.0)


class ReplicaReader(FolderReader):
    """Reader of an Omnidata Replica export; edge tolerance unused (no edge task)."""

    name = "replica"
    tasks: ClassVar[tuple[str, ...]] = ("semseg", "depth", "normals")
    split_files: ClassVar[dict[str, str]] = {split: f"splits/{split}.txt" for split in ("train", "val", "test")}
    has_val_split = True

    def __init__(self, root: Path | str, options: ReplicaOptions | None = None) -> None:
        super().__init__(root)
        self.options = options or ReplicaOptions()
        self._views: dict[str, tuple[str, int]] = {}

    def split_path(self, split: str) -> Path:
        if split not in self.split_files:
            raise DataError(f"replica has no split {split!r}; available: {', '.join(self.split_files)}")
        return self.root / self.options.split_dir / f"{split}.txt"

    def _folder(self, key: str, scene: str) -> Path:
        return self.root / self.options.domains[key] / self.options.dataset_folder / scene

    def scenes(self, split: str) -> list[str]:
        """Scene names listed by the split file."""
        return super().ids(split)

    def ids(self, split: str) -> list[str]:
        ids: list[str] = []
        for scene in self.scenes(split):
            folder = require_dir(self._folder("image", scene), f"replica images of scene {scene!r}")
            suffix = f"_domain_{self.options.domains['image']}.png"
            views = sorted(
                (tuple(map(int, match.groups())), path.name[: -len(suffix)])
                for path in folder.glob(f"*{suffix}")
                if (match := _VIEW.match(path.name))
            )
            if not views:
                raise DataError(f"{folder} holds no '*{suffix}' images; is this an Omnidata Replica export?")
            for position, (_, stem) in enumerate(views):
                sample_id = f"{scene}/{stem}"
                self._views[sample_id] = (scene, position)
                ids.append(sample_id)
        return ids

    def scene_view(self, sample_id: str) -> tuple[str, int]:
        return self._views[sample_id]

    def paths(self, sample_id: str, key: str) -> list[Path]:
        if key not in self.options.domains:
            raise DataError(f"replica has no task {key!r}")
        scene, stem = sample_id.split("/", 1)
        return [self._folder(key, scene) / f"{stem}_domain_{self.options.domains[key]}.png"]

    def read(self, sample_id: str, key: str) -> torch.Tensor:
        (path,) = self.paths(sample_id, key)
        opts = self.options
        if key == "image":
            return read_rgb(path)
        array = read_png_array(path)
        if key == "semseg":
            return decode_labels(array, path, opts.num_classes, offset=opts.semseg_offset, ignore=opts.ignore_labels)
        if key == "depth":
            return decode_depth(array, path, scale=opts.depth_scale, invalid=opts.depth_invalid)
        return decode_normals(array, path, from_uint8=True, signs=opts.normal_signs)

    def num_classes(self) -> dict[str, int]:
        return {"semseg": self.options.num_classes}


class ReplicaDataset(FolderDataset):
    """Replica with the paper's data-quantity options (``scene_subset``, ``scans_per_scene``)."""

    reader: ReplicaReader

    def __init__(
        self,
        reader: ReplicaReader,
        split: str,
        tasks: Sequence[str] | None = None,
        scene_subset: Amount | Sequence[str] | None = None,
        scans_per_scene: Amount | None = None,
        subset_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.scene_subset, self.scans_per_scene, self.subset_seed = scene_subset, scans_per_scene, subset_seed
        super().__init__(reader, split, tasks, **kwargs)

    def select(self, ids: list[str]) -> list[str]:
        by_scene: dict[str, list[str]] = {}
        for sample_id in ids:
            by_scene.setdefault(self.reader.scene_view(sample_id)[0], []).append(sample_id)
        kept: list[str] = []
        for scene in select_scenes(list(by_scene), self.scene_subset, self.subset_seed):
            positions = select_views(scene, range(len(by_scene[scene])), self.scans_per_scene, self.subset_seed)
            kept += [by_scene[scene][p] for p in positions]
        return kept
