"""NYUD-v2 in the two layouts in circulation (see ``docs`` / dense_prediction.md §1.1).

``NYUD_MT`` (MTLP/ATRC download)::

    images/<id>.jpg  segmentation/<id>.png  depth/<id>.npy  normals/<id>.npy (H×W×3)  edge/<id>.npy
    gt_sets/train.txt (795 ids)  gt_sets/val.txt (654 ids: the standard test set)

``NYUDv2`` (ATRC/InvPT download): the same folders with ``images/*.png``, ``normals/*.png`` (RGB,
``2x/255-1``), ``edge/*.png`` (0/255); depth stays ``.npy``.

The layout is detected from the image files (.jpg → NYUD_MT, .png → NYUDv2) and recorded in
``info.metadata["layout"]``, because numbers are not comparable across the two. Segmentation stores 0 as
unlabeled and 1..40 as classes (→ 0..39, 255 ignore); depth is metres with 0 invalid.

Splits: ``train`` and ``test`` (``gt_sets/val.txt``). There is no separate validation split
(``has_val_split=False``): the file named val is the test set, so model selection must not use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from taskbalance.data.base import DataError
from taskbalance.data.decode import decode_binary, decode_depth, decode_labels, decode_normals
from taskbalance.data.folder import FolderReader
from taskbalance.data.io import read_npy, read_png_array, read_rgb

__all__ = ["LAYOUTS", "NUM_CLASSES", "NYUDReader", "detect_nyud_layout"]

NUM_CLASSES = 40
#: File suffix of each key, per layout.
LAYOUTS: dict[str, dict[str, str]] = {
    "NYUD_MT": {"image": ".jpg", "semseg": ".png", "depth": ".npy", "normals": ".npy", "edge": ".npy"},
    "NYUDv2": {"image": ".png", "semseg": ".png", "depth": ".npy", "normals": ".png", "edge": ".png"},
}
FOLDERS: dict[str, str] = {
    "image": "images",
    "semseg": "segmentation",
    "depth": "depth",
    "normals": "normals",
    "edge": "edge",
}


def detect_nyud_layout(root: Path) -> str:
    """``NYUD_MT`` or ``NYUDv2`` from the suffix of the files in ``root/images``."""
    images = root / "images"
    suffixes = {p.suffix.lower() for p in images.iterdir()} if images.is_dir() else set()
    found = [name for name, suffix in LAYOUTS.items() if suffix["image"] in suffixes]
    if len(found) != 1:
        raise DataError(
            f"cannot tell the NYUD-v2 layout of {root}: expected {images} to hold .jpg images (NYUD_MT) or .png "
            f"images (NYUDv2), found {sorted(suffixes) or 'no files'}"
        )
    return found[0]


class NYUDReader(FolderReader):
    """Reader of either NYUD-v2 layout (detected, or forced with ``layout``); edge tolerance 0.011."""

    name = "nyud"
    tasks: ClassVar[tuple[str, ...]] = ("semseg", "depth", "normals", "edge")
    split_files: ClassVar[dict[str, str]] = {"train": "gt_sets/train.txt", "test": "gt_sets/val.txt"}

    def __init__(self, root: Path | str, layout: str | None = None) -> None:
        super().__init__(root)
        if layout is not None and layout not in LAYOUTS:
            raise DataError(f"nyud layout must be one of {tuple(LAYOUTS)}, got {layout!r}")
        self._layout = layout or detect_nyud_layout(self.root)

    @property
    def layout(self) -> str:
        return self._layout

    def split_path(self, split: str) -> Path:
        if split == "val":
            raise DataError(
                "nyud has no validation split: gt_sets/val.txt is the standard 654-image test set. "
                "Use split='test' for the final evaluation and select models without it."
            )
        return super().split_path(split)

    def paths(self, sample_id: str, key: str) -> list[Path]:
        return [self.root / FOLDERS[key] / f"{sample_id}{LAYOUTS[self._layout][key]}"]

    def read(self, sample_id: str, key: str) -> torch.Tensor:
        (path,) = self.paths(sample_id, key)
        png = path.suffix == ".png"
        if key == "image":
            return read_rgb(path)
        if key == "semseg":
            return decode_labels(read_png_array(path), path, NUM_CLASSES, offset=1, ignore=(0,))
        if key == "depth":
            return decode_depth(read_npy(path), path)
        if key == "normals":
            return decode_normals(read_png_array(path) if png else read_npy(path), path, from_uint8=png)
        if key == "edge":
            return decode_binary(read_png_array(path), path, 255.0) if png else decode_binary(read_npy(path), path, 1.0)
        raise DataError(f"nyud has no task {key!r}")

    def num_classes(self) -> dict[str, int]:
        return {"semseg": NUM_CLASSES}

