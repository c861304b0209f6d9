"""The embedded synthetic multi-task dataset: procedural rooms seen from many views ('scans').

A split is a set of scenes named ``<split>_<index>``; a scene's geometry is a function of (seed, split,
index) and a view's camera, exposure and sensor noise of (seed, split, index, view), so train, val and test
scenes never coincide and every item is reproducible. A split is rendered once, vectorised over each
scene's views, and kept in memory (recent splits are shared between dataset objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taskbalance.conventions import TASK_NAMES
from taskbalance.data.base import DataError, DatasetInfo, MultiTaskDataset, check_tasks
from taskbalance.data.noise import LabelNoise
from taskbalance.data.rng import mix_seed
from taskbalance.data.subsets import select_scenes, select_views
from taskbalance.data.synthetic.geometry import intrinsics
from taskbalance.data.synthetic.render import render_views
from taskbalance.data.synthetic.scenes import CLASSES, PARTS, sample_camera, sample_scene
from taskbalance.data.transforms import Augmentation, Sample

__all__ = [
    "DEFAULT_SCENES",
    "SyntheticDataset",
    "SyntheticOptions",
    "describe_synthetic",
    "render_split",
    "split_layout",
]

#: Scenes per split when ``num_scenes`` is not given (16 views each).
DEFAULT_SCENES: dict[str, int] = {"train": 24, "val": 6, "test": 8}


class SyntheticOptions(BaseModel):
    """Options of the synthetic dataset (see ``docs/contracts.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_scenes: int | dict[str, int] | None = Field(
        None, description="scenes in this split, or per split ({train: 96, test: 32}; default: DEFAULT_SCENES)")
    views_per_scene: int = Field(16, ge=1)
    resolution: tuple[int, int] = (64, 80)
    seed: int = 0
    label_noise: bool | LabelNoise = False
    scans_per_scene: int | float | None = None
    scene_subset: int | float | list[str] | None = None
    hfov_degrees: float = Field(65.0, gt=10.0, lt=150.0)
    max_objects: int = Field(7, ge=3)

    @field_validator("num_scenes")
    @classmethod
    def _positive_counts(cls, value: int | dict[str, int] | None) -> int | dict[str, int] | None:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(DEFAULT_SCENES))
            if unknown:
                raise ValueError(f"unknown split(s) {', '.join(unknown)} (splits: {', '.join(DEFAULT_SCENES)})")
        counts = list(value.values()) if isinstance(value, dict) else [] if value is None else [value]
        if any(count < 1 for count in counts):
            raise ValueError(f"every split needs at least one scene, got {value}")
        return value

    def scenes_in(self, split: str) -> int:
        """The number of scenes of ``split``."""
        if isinstance(self.num_scenes, dict):
            return self.num_scenes.get(split, DEFAULT_SCENES[split])
        return self.num_scenes or DEFAULT_SCENES[split]


@dataclass(frozen=True)
class RenderedSplit:
    """All views of a split, stacked per task (N, ...), with each view's scene name and view index."""

    tensors: dict[str, torch.Tensor]
    scenes: tuple[str, ...]
    views: tuple[int, ...]
    intrinsics: torch.Tensor


@lru_cache(maxsize=6)
def render_split(
    seed: int,
    split: str,
    num_scenes: int,
    views_per_scene: int,
    resolution: tuple[int, int],
    hfov_degrees: float = 65.0,
    max_objects: int = 7,
) -> RenderedSplit:
    """Render every view of every scene of ``split`` (cached: the same arguments return the same object)."""
    camera_intrinsics = intrinsics(resolution, hfov_degrees)
    chunks: list[dict[str, torch.Tensor]] = []
    for index in range(num_scenes):
        generator = torch.Generator().manual_seed(mix_seed(seed, split, index))
        scene = sample_scene(generator, max_objects)
        cameras = [sample_camera(scene, generator) for _ in range(views_per_scene)]
        noise = [torch.Generator().manual_seed(mix_seed(seed, split, index, view)) for view in range(views_per_scene)]
        chunks.append(render_views(scene, cameras, resolution, camera_intrinsics, noise))
    tensors = {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
    scenes, views = split_layout(split, num_scenes, views_per_scene)
    return RenderedSplit(tensors, scenes, views, camera_intrinsics)


def split_layout(split: str, num_scenes: int, views_per_scene: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The scene name and view index of every row of a rendered split, known without rendering it."""
    scenes = tuple(f"{split}_{index:03d}" for index in range(num_scenes) for _ in range(views_per_scene))
    return scenes, tuple(range(views_per_scene)) * num_scenes


def _options(split: str, options: dict[str, Any]) -> SyntheticOptions:
    if split not in DEFAULT_SCENES:
        raise DataError(f"synthetic: split must be one of {tuple(DEFAULT_SCENES)}, got {split!r}")
    try:
        return SyntheticOptions(**options)
    except ValidationError as error:
        raise DataError(f"synthetic: invalid options: {error}") from None


def _select(split: str, tasks: tuple[str, ...], opts: SyntheticOptions) -> tuple[list[int], DatasetInfo]:
    """The rows of the split a dataset keeps (scene subset, scans per scene) and its description; no rendering."""
    scenes, views = split_layout(split, opts.scenes_in(split), opts.views_per_scene)
    kept_scenes = select_scenes(dict.fromkeys(scenes), opts.scene_subset, opts.seed)
    indices: list[int] = []
    for scene in kept_scenes:
        rows = [i for i, s in enumerate(scenes) if s == scene]
        kept_views = set(select_views(scene, [views[i] for i in rows], opts.scans_per_scene, opts.seed))
        indices += [i for i in rows if views[i] in kept_views]
    info = DatasetInfo(
        name="synthetic",
        tasks=tasks,
        num_classes={"semseg": len(CLASSES), "human_parts": len(PARTS)},
        edge_max_dist=0.011,
        has_val_split=True,
        metadata={"layout": "synthetic", "split": split, "scenes": len(kept_scenes), **opts.model_dump(mode="json")},
    )
    return indices, info


def describe_synthetic(
    split: str = "train", tasks: Sequence[str] | None = None, **options: Any
) -> tuple[DatasetInfo, int]:
    """``(info, number of items)`` of the split :class:`SyntheticDataset` would build, without rendering it."""
    opts = _options(split, options)
    indices, info = _select(split, check_tasks("synthetic", tasks or TASK_NAMES, TASK_NAMES), opts)
    return info, len(indices)


class SyntheticDataset(MultiTaskDataset):
    """Procedural indoor scenes with exact labels for all six tasks.

    Classes (``semseg``): floor, wall, ceiling, rug, painting, sphere, box, cylinder, cone. Parts
    (``human_parts``): background, box top, box side, sphere upper, sphere lower, cap, lateral. Depth is
    z-depth in metres; normals are unit vectors in the camera frame (x right, y down, z forward) facing the
    camera; saliency is the object mask; edges are one-pixel class and occlusion boundaries.
    The camera intrinsics (fx, fy, cx, cy) are ``dataset.intrinsics``. ``split`` is one of ``DEFAULT_SCENES``'
    keys (train, val, test).
    """

    def __init__(
        self,
        split: str = "train",
        tasks: Sequence[str] | None = None,
        augment: bool | Augmentation = False,
        augment_seed: int | None = None,
        **options: Any,
    ) -> None:
        self.options = opts = _options(split, options)
        super().__init__(augment=augment, augment_seed=augment_seed, label_noise=opts.label_noise)
        self.split = split
        self.tasks = check_tasks("synthetic", tasks or TASK_NAMES, TASK_NAMES)
        self.indices, self.info = _select(split, self.tasks, opts)
        rendered = render_split(
            opts.seed,
            split,
            opts.scenes_in(split),
            opts.views_per_scene,
            tuple(opts.resolution),
            opts.hfov_degrees,
            opts.max_objects,
        )
        self._rendered = rendered
        self.intrinsics = rendered.intrinsics

    def __len__(self) -> int:
        return len(self.indices)

    def load_sample(self, index: int) -> Sample:
        row = self.indices[index]
        tensors = self._rendered.tensors
        scene, view = self._rendered.scenes[row], self._rendered.views[row]
        sample: Sample = {"image": tensors["image"][row].clone()}
        for task in self.tasks:
            sample[task] = tensors[task][row].clone()
        sample["meta"] = {"id": f"{scene}_{view:03d}", "scene": scene, "view": view}
        return sample
