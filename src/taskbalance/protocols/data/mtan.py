"""NYUv2 (3 tasks) and Cityscapes (2 tasks) in the preprocessed ``.npy`` layout of the MTAN repository
(``lorenmt/mtan``; the same files are read by CAGrad, Nash-MTL, FAMO, FairGrad and IMGrad)::

    <root>/train/image/<i>.npy     H×W×3 float RGB in [0, 1] (not normalised; the SegNets see it as is)
    <root>/train/label/<i>.npy     H×W class ids as floats, −1 = unlabelled   (Cityscapes: label_7/ or label_19/)
    <root>/train/depth/<i>.npy     H×W×1 depth, 0 = invalid
    <root>/train/normal/<i>.npy    H×W×3 unit normals, all-zero = invalid     (NYUv2 only)
    <root>/val/...                 the split the papers evaluate on every epoch (our ``test``)

with ``<i>`` running over 0 … n−1 (the repository's loader indexes files by position). NYUv2: 795 / 654 images at
288×384, 13 classes; Cityscapes: 2975 / 500 at 128×256, 7 (or 19) classes. The value range of the image files is
our reading of the repository (its loader feeds them unchanged to the network); :class:`MTANDataset` checks it and
names the file when it does not hold. Items follow :mod:`taskbalance.conventions` except that the image keeps the
protocol's [0, 1] range; −1 labels become 255.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.data import DataError, DatasetInfo
from taskbalance.data.base import check_tasks
from taskbalance.protocols.data.augment import mtan_scale_crop_flip
from taskbalance.protocols.data.base import ProtocolDataset

#: The folder of each split (the papers train on ``train`` and evaluate on ``val``, which is their test set).
SPLIT_FOLDERS: dict[str, str] = {"train": "train", "test": "val"}
#: Tolerance of the [0, 1] image-range check (float rounding in preprocessing).
RANGE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class MTANLayout:
    """One dataset in the MTAN layout: its name, tasks, label folder, class count and image size."""

    name: str
    tasks: tuple[str, ...]
    label_folder: str
    num_classes: int
    resolution: tuple[int, int]

    def folder(self, task: str) -> str:
        """The folder holding ``task``'s files (``image`` for the input)."""
        return {"image": "image", "semseg": self.label_folder, "depth": "depth", "normals": "normal"}[task]


NYUV2 = MTANLayout("nyuv2", ("semseg", "depth", "normals"), "label", 13, (288, 384))
CITYSCAPES_7 = MTANLayout("cityscapes", ("semseg", "depth"), "label_7", 7, (128, 256))
CITYSCAPES_19 = MTANLayout("cityscapes", ("semseg", "depth"), "label_19", 19, (128, 256))


def cityscapes_layout(classes: int = 7) -> MTANLayout:
    """The Cityscapes layout with the 7-class (the papers') or 19-class labels."""
    layouts = {7: CITYSCAPES_7, 19: CITYSCAPES_19}
    if classes not in layouts:
        raise DataError(
            f"cityscapes: classes must be 7 (label_7/, the papers' setting) or 19 (label_19/), got {classes!r}"
        )
    return layouts[classes]


def _indices(folder: Path) -> int:
    """Number of files ``0.npy … (n−1).npy`` in ``folder``; an error names a gap or a stray file."""
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}")
    names = sorted(p.stem for p in folder.glob("*.npy"))
    if not names:
        raise DataError(f"{folder} holds no .npy file")
    if not all(n.isdigit() for n in names):
        stray = next(n for n in names if not n.isdigit())
        raise DataError(f"{folder}/{stray}.npy: files must be named <index>.npy with index 0 … n−1")
    present = {int(n) for n in names}
    missing = sorted(set(range(len(present))) - present)
    if missing:
        raise DataError(f"{folder}: files must be numbered 0 … {len(present) - 1}; {missing[0]}.npy is missing")
    return len(present)


def _load(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: not a readable .npy array ({error})") from None
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    return array


def _shaped(path: Path, array: np.ndarray, height: int, width: int, channels: int | None) -> np.ndarray:
    expected = (height, width) if channels is None else (height, width, channels)
    if array.shape != expected and not (channels == 1 and array.shape == (height, width)):
        raise DataError(f"{path}: expected shape {'×'.join(map(str, expected))}, got {'×'.join(map(str, array.shape))}")
    return array


class MTANDataset(ProtocolDataset):
    """One split of a dataset in the MTAN ``.npy`` layout (see the module docstring).

    Args:
        layout: :data:`NYUV2` or :func:`cityscapes_layout`.
        root: the folder holding ``train/`` and ``val/``; never written to.
        split: ``train`` or ``test`` (read from ``val/``). There is no separate validation split.
        tasks: a subset of the layout's tasks (default: all).
        augment: the repositories' training augmentation (random scale-crop from {1, 1.2, 1.5} + flip).
        seed: seed of the augmentation stream.
    """

    def __init__(self, layout: MTANLayout, root: Path | str, split: str = "train", tasks: Sequence[str] | None = None,
                 augment: bool = False, seed: int = 0) -> None:
        if split not in SPLIT_FOLDERS:
            raise DataError(f"{layout.name}: split must be 'train' or 'test' (the papers' val/ folder), got {split!r}")
        self.layout = layout
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"{layout.name}: dataset folder {self.root} does not exist (expected train/ and val/ inside)"
            )
        self.folder = self.root / SPLIT_FOLDERS[split]
        self.tasks = check_tasks(layout.name, tasks or layout.tasks, layout.tasks)
        self.length = _indices(self.folder / "image")
        for task in self.tasks:
            count = _indices(self.folder / layout.folder(task))
            if count != self.length:
                raise DataError(
                    f"{self.folder / layout.folder(task)} holds {count} files but image/ holds {self.length}"
                )
        self.augment = augment
        self._generator = torch.Generator().manual_seed(seed)
        self.info = DatasetInfo(
            layout.name,
            self.tasks,
            {"semseg": layout.num_classes},
            0.0,
            False,
            {"root": str(self.root), "layout": f"mtan-npy/{layout.label_folder}", "split_folder": self.folder.name},
        )

    def __len__(self) -> int:
        return self.length

    def _path(self, task: str, index: int) -> Path:
        return self.folder / self.layout.folder(task) / f"{index}.npy"

    def load_sample(self, index: int) -> dict[str, Any]:
        """Sample ``index`` read and validated from its files, before augmentation."""
        path = self._path("image", index)
        image = _load(path)
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"{path}: expected an H×W×3 image, got shape {'×'.join(map(str, image.shape))}")
        if image.min() < -RANGE_TOLERANCE or image.max() > 1 + RANGE_TOLERANCE:
            raise DataError(
                f"{path}: image values span [{image.min():.3g}, {image.max():.3g}], "
                "expected [0, 1] (MTAN preprocessing)"
            )
        height, width = image.shape[:2]
        sample: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
        }
        for task in self.tasks:
            path = self._path(task, index)
            if task == "semseg":
                label = _shaped(path, _load(path), height, width, None)
                bad = (label != np.round(label)) | ((label != -1) & ((label < 0) | (label >= self.layout.num_classes)))
                if bad.any():
                    raise DataError(f"{path}: label values {np.unique(label[bad])[:8].tolist()} are not class ids in "
                                    f"[0, {self.layout.num_classes - 1}] or −1 (unlabelled)")
                semseg = torch.from_numpy(label.astype(np.int64))
                sample[task] = torch.where(semseg < 0, torch.tensor(IGNORE_INDEX), semseg)
            else:
                channels = 1 if task == "depth" else 3
                values = _shaped(path, _load(path), height, width, channels).reshape(height, width, channels)
                sample[task] = torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1), dtype=np.float32))
        sample["meta"] = {"id": f"{self.folder.name}/{index}", "scene": "", "view": 0}
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} items")
        sample = self.load_sample(index % self.length)
        if self.augment:
            sample = mtan_scale_crop_flip(sample, self._generator)
        return sample
