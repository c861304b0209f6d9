"""PASCAL-Context in the PASCAL_MT layout (dense_prediction.md §1.2)::

    JPEGImages/<id>.jpg
    ImageSets/Context/train.txt (4,998 ids)  ImageSets/Context/val.txt (5,105 ids: the test set)
    semseg/VOC12/<id>.png  (fallback semseg/pascal-context/<id>.png): 0 background, 1..20 VOC classes, 255 ignore
    pascal-context/trainval/<id>.mat   variable LabelMap: the full Context labels; edges are derived from it
                                       (``context_edges``)
    human_parts/<id>.mat               variable anno: the PASCAL-Part struct (objects → parts with masks)
    normals_distill/<id>.png           RGB, 2x/255-1 (teacher-distilled pseudo-labels)
    sal_distill/<id>.png               grayscale, binarised at 0.5 (teacher-distilled pseudo-labels)

Human parts: the parts of every person (class 15) grouped into 6 parts + background (``HUMAN_PART_GROUPS``).
An image without any part label (no person, or persons whose parts list is empty) is all-ignore: the reference
evaluation (ASTMT/MTLP ``eval_human_parts.py``) skips an image whose labels are all 0 or all 255, whereas the
reference training loaders would train a person without parts as background. When ``human_parts`` is the only
task such images are dropped (as ASTMT drops images without a person). Nothing is ever written into the dataset
folder (ASTMT caches the person list there; we keep it in memory).

Normals: the distilled normals are labels only on pixels whose Context ``LabelMap`` class is one NYU-v2 also
annotates (``NORMALS_VALID_LABELS``, 170 ids: the class names in both the NYU and the 459-class Context lists,
except 'unknown', plus 'tvmonitor'; typically 10-25% of an image), as in ASTMT/MTLP, ATRC and InvPT; every other
pixel is all-zero, which the normals loss and metric skip (conventions.py). Option ``normals_valid_labels``: None
(default) for that set, ``"all"`` to keep every pixel (not the reference protocol), or a list of LabelMap ids.

Splits: ``train`` and ``test`` (the Context val list); no separate val split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.data.base import DataError
from taskbalance.data.decode import decode_binary, decode_labels, decode_normals
from taskbalance.data.edges import context_edges
from taskbalance.data.folder import FolderDataset, FolderReader
from taskbalance.data.io import image_size, read_mat, read_png_array, read_rgb

__all__ = [
    "HUMAN_PART_GROUPS",
    "NORMALS_VALID_LABELS",
    "PERSON_CLASS",
    "PascalDataset",
    "PascalReader",
    "parse_human_parts",
]

PERSON_CLASS = 15
NUM_SEMSEG_CLASSES = 21
#: Context ``LabelMap`` ids on which the distilled normals are labels (the reference layouts' NYU ∩ Context
#: classes plus tvmonitor; shared/reference/pascal_normals_valid_ids.md): e.g. bottle 34, chair 72, book 33,
#: person 284 are in, sky 360, grass 187, tree 420, building 44, road 324 and 0 (unlabeled) are not.
NORMALS_VALID_LABELS: tuple[int, ...] = (
    3, 4, 6, 9, 10, 11, 13, 15, 17, 18, 22, 23, 29, 30, 33, 34, 36, 37, 38, 39, 41, 43, 46, 49, 50, 51, 53, 55, 56,
    59, 61, 62, 65, 66, 68, 69, 72, 73, 78, 83, 84, 85, 87, 88, 95, 96, 101, 104, 105, 107, 111, 113, 115, 122, 124,
    135, 141, 142, 143, 146, 150, 154, 157, 158, 159, 165, 172, 174, 181, 183, 184, 191, 193, 195, 197, 199, 202, 213,
    215, 216, 219, 220, 223, 225, 228, 230, 232, 233, 238, 239, 242, 243, 246, 250, 251, 252, 255, 260, 261, 263, 269,
    272, 273, 275, 281, 283, 284, 285, 286, 287, 288, 290, 291, 292, 293, 295, 304, 307, 309, 310, 314, 315, 319, 323,
    329, 330, 331, 336, 342, 345, 349, 350, 351, 352, 355, 357, 368, 370, 371, 374, 379, 380, 383, 384, 397, 401, 403,
    405, 407, 408, 411, 412, 413, 414, 417, 419, 421, 423, 427, 429, 430, 432, 440, 441, 442, 443, 444, 446, 454, 457,
)
#: PASCAL-Part person part names → part group (1 head, 2 torso/neck, 3 upper arms, 4 lower arms and hands,
#: 5 upper legs, 6 lower legs and feet); 0 is background.
HUMAN_PART_GROUPS: dict[str, int] = {
    **dict.fromkeys(("head", "leye", "reye", "lear", "rear", "lebrow", "rebrow", "nose", "mouth", "hair"), 1),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}


def _field(record: Any, name: str, path: Path) -> Any:
    names = record.dtype.names or ()
    if name not in names:
        raise DataError(f"{path}: PASCAL-Part struct has no field {name!r} (fields: {names}); not a PASCAL-Part file")
    return record[name]


def _text(value: Any) -> str:
    while isinstance(value, np.ndarray):
        value = value.flat[0] if value.size else ""
    return str(value)


def parse_human_parts(anno: Any, path: Path) -> torch.Tensor | None:
    """Part-group map (long H×W, 0 background) of every person in a PASCAL-Part ``anno`` struct;
    None when no pixel carries a part label (no person, or persons without parts)."""
    objects = _field(anno.flat[0], "objects", path)
    result: np.ndarray | None = None
    for obj in objects.flat:
        if int(np.asarray(_field(obj, "class_ind", path)).flat[0]) != PERSON_CLASS:
            continue
        mask = np.asarray(_field(obj, "mask", path))
        if result is None:
            result = np.zeros(mask.shape, dtype=np.int64)
        for part in np.asarray(_field(obj, "parts", path)).flat:
            name = _text(_field(part, "part_name", path))
            if name not in HUMAN_PART_GROUPS:
                raise DataError(f"{path}: unknown person part {name!r}; expected one of {sorted(HUMAN_PART_GROUPS)}")
            part_mask = np.asarray(_field(part, "mask", path)) > 0
            if part_mask.shape != result.shape:
                raise DataError(f"{path}: part mask {part_mask.shape} differs from the object mask {result.shape}")
            result[part_mask] = HUMAN_PART_GROUPS[name]
    return None if result is None or not result.any() else torch.from_numpy(result)


def _normals_valid_labels(option: Sequence[int] | Literal["all"] | None) -> torch.Tensor | None:
    """The LabelMap ids whose normals are labels (None: every pixel) for the ``normals_valid_labels`` option."""
    if option is None:
        return torch.tensor(NORMALS_VALID_LABELS)
    if isinstance(option, str):
        if option != "all":
            raise DataError(
                f"pascal: normals_valid_labels must be 'all', a list of Context LabelMap ids or null, got {option!r}"
            )
        return None
    labels = list(option)
    if not labels or not all(isinstance(label, (int, np.integer)) and not isinstance(label, bool) for label in labels):
        raise DataError(
            f"pascal: normals_valid_labels must be a non-empty list of integer LabelMap ids, got {option!r}"
        )
    return torch.tensor(labels)


class PascalReader(FolderReader):
    """Reader of the PASCAL_MT layout; edge tolerance 0.0075."""

    name = "pascal"
    tasks: ClassVar[tuple[str, ...]] = ("semseg", "human_parts", "normals", "sal", "edge")
    split_files: ClassVar[dict[str, str]] = {
        "train": "ImageSets/Context/train.txt",
        "test": "ImageSets/Context/val.txt",
    }
    edge_max_dist = 0.0075

    def __init__(self, root: Path | str, normals_valid_labels: Sequence[int] | Literal["all"] | None = None) -> None:
        super().__init__(root)
        self.normals_valid_labels = _normals_valid_labels(normals_valid_labels)

    def split_path(self, split: str) -> Path:
        if split == "val":
            raise DataError(
                "pascal has no validation split: ImageSets/Context/val.txt is the test set. "
                "Use split='test' for the final evaluation and select models without it."
            )
        return super().split_path(split)

    def _label_map(self, sample_id: str) -> torch.Tensor:
        path = self.root / "pascal-context" / "trainval" / f"{sample_id}.mat"
        array = np.asarray(read_mat(path, "LabelMap"))
        if array.ndim != 2:
            raise DataError(f"{path}: LabelMap must be H×W, got shape {array.shape}")
        return torch.from_numpy(array.astype(np.int64))

    def paths(self, sample_id: str, key: str) -> list[Path]:
        label_map = self.root / "pascal-context" / "trainval" / f"{sample_id}.mat"
        if key == "image":
            return [self.root / "JPEGImages" / f"{sample_id}.jpg"]
        if key == "semseg":
            voc = self.root / "semseg" / "VOC12" / f"{sample_id}.png"
            context = self.root / "semseg" / "pascal-context" / f"{sample_id}.png"
            return [context if not voc.is_file() and context.is_file() else voc]
        if key == "human_parts":
            return [self.root / "human_parts" / f"{sample_id}.mat"]
        if key == "normals":
            normals = self.root / "normals_distill" / f"{sample_id}.png"
            return [normals] if self.normals_valid_labels is None else [normals, label_map]
        if key == "sal":
            return [self.root / "sal_distill" / f"{sample_id}.png"]
        if key == "edge":
            return [label_map]
        raise DataError(f"pascal has no task {key!r}")

    def read(self, sample_id: str, key: str) -> torch.Tensor:
        path = self.paths(sample_id, key)[0]
        if key == "image":
            return read_rgb(path)
        if key == "semseg":
            return decode_labels(read_png_array(path), path, NUM_SEMSEG_CLASSES)
        if key == "human_parts":
            parts = parse_human_parts(read_mat(path, "anno"), path)
            if parts is None:
                width, height = image_size(self.paths(sample_id, "image")[0])
                return torch.full((height, width), IGNORE_INDEX, dtype=torch.long)
            return parts
        if key == "normals":
            normals = decode_normals(read_png_array(path), path, from_uint8=True)
            if self.normals_valid_labels is not None:
                valid = torch.isin(self._label_map(sample_id), self.normals_valid_labels)
                normals = normals * valid
            return normals
        if key == "sal":
            array = read_png_array(path)
            return decode_binary(array.mean(-1) if array.ndim == 3 else array, path, 255.0)
        if key == "edge":
            return context_edges(self._label_map(sample_id))[None]
        raise DataError(f"pascal has no task {key!r}")

    def has_human_parts(self, sample_id: str) -> bool:
        """Whether the PASCAL-Part annotation of ``sample_id`` labels a part of a person."""
        (path,) = self.paths(sample_id, "human_parts")
        return parse_human_parts(read_mat(path, "anno"), path) is not None

    def num_classes(self) -> dict[str, int]:
        return {"semseg": NUM_SEMSEG_CLASSES, "human_parts": len(set(HUMAN_PART_GROUPS.values())) + 1}


class PascalDataset(FolderDataset):
    """PASCAL-Context; with ``human_parts`` as the only task, images without part labels are left out."""

    reader: PascalReader

    def select(self, ids: list[str]) -> list[str]:
        if self.tasks != ("human_parts",):
            return ids
        return [sample_id for sample_id in ids if self.reader.has_human_parts(sample_id)]
