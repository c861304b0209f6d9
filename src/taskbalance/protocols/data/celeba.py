"""CelebA's 40 binary attributes (Liu et al., ICCV 2015) as read by FAMO / FairGrad / IMGrad.

Files, from the official release, in either the Google-Drive folder layout or flat (torchvision's)::

    <root>/Img/img_align_celeba/<name>.jpg    or <root>/img_align_celeba/<name>.jpg
    <root>/Anno/list_attr_celeba.txt          or <root>/list_attr_celeba.txt     (count; 40 names; name ±1 ×40)
    <root>/Eval/list_eval_partition.txt       or <root>/list_eval_partition.txt  (name 0|1|2 = train|val|test)

Items (FAMO ``experiments/celeba/data.py``): the aligned 178×218 image resized to 64×64 (PIL bilinear, as
torchvision's ``Resize``), as float RGB in [0, 1]; one float 0/1 label per attribute, keyed by attribute name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from taskbalance.data import DataError, DatasetInfo
from taskbalance.protocols.data.base import ProtocolDataset

#: CelebA's official partition codes.
PARTITIONS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
#: Input size of the papers' CNN.
IMAGE_SIZE: tuple[int, int] = (64, 64)


def _find(root: Path, *candidates: str) -> Path:
    for candidate in candidates:
        if (root / candidate).exists():
            return root / candidate
    raise DataError(f"celeba: none of {', '.join(str(root / c) for c in candidates)} exists")


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """``(attribute names, image names, N×A 0/1 labels)`` from ``list_attr_celeba.txt``; errors name the line."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise DataError(f"{path}: expected the image count on line 1 and the attribute names on line 2")
    count, names = int(lines[0][0]), lines[1]
    rows = lines[2:]
    if len(rows) != count:
        raise DataError(f"{path}: line 1 announces {count} images but {len(rows)} rows follow")
    labels = np.zeros((count, len(names)), dtype=np.float32)
    images = []
    for number, row in enumerate(rows, start=3):
        if len(row) != len(names) + 1 or any(v not in ("1", "-1") for v in row[1:]):
            raise DataError(f"{path} line {number}: expected an image name and {len(names)} values of 1 or -1")
        images.append(row[0])
        labels[number - 3] = [v == "1" for v in row[1:]]
    return names, images, labels


def read_partition(path: Path) -> dict[str, int]:
    """Image name → partition code (0 train, 1 val, 2 test) from ``list_eval_partition.txt``."""
    partition = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path} line {number}: expected '<image> <0|1|2>', got {line!r}")
        partition[fields[0]] = int(fields[1])
    return partition


class CelebADataset(ProtocolDataset):
    """One official split of CelebA with the requested attributes as tasks (default: all 40).

    Args:
        root: the CelebA folder (see the module docstring); never written to.
        split: ``train``, ``val`` or ``test``.
        tasks: attribute names, e.g. ``("Smiling", "Young")``.
    """

    def __init__(self, root: Path | str, split: str = "train", tasks: Sequence[str] | None = None) -> None:
        if split not in PARTITIONS:
            raise DataError(f"celeba: split must be one of {', '.join(PARTITIONS)}, got {split!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"celeba: dataset folder {self.root} does not exist")
        self.image_dir = _find(self.root, "Img/img_align_celeba", "img_align_celeba")
        attr_path = _find(self.root, "Anno/list_attr_celeba.txt", "list_attr_celeba.txt")
        names, images, labels = read_attributes(attr_path)
        partition = read_partition(_find(self.root, "Eval/list_eval_partition.txt", "list_eval_partition.txt"))
        unassigned = [image for image in images if image not in partition]
        if unassigned:
            raise DataError(
                f"celeba: {unassigned[0]} (and {len(unassigned) - 1} more) has no entry in the partition file"
            )
        chosen = list(tasks) if tasks is not None else names
        unknown = [t for t in chosen if t not in names]
        if unknown or not chosen or len(set(chosen)) != len(chosen):
            raise DataError(f"celeba: tasks must be distinct attribute names from {attr_path}; unknown: {unknown}")
        keep = [i for i, image in enumerate(images) if partition[image] == PARTITIONS[split]]
        self.tasks = tuple(chosen)
        self.images = [images[i] for i in keep]
        self.labels = torch.from_numpy(labels[keep][:, [names.index(t) for t in chosen]])
        self.info = DatasetInfo("celeba", self.tasks, {}, 0.0, True, {"root": str(self.root), "split": split})

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.image_dir / self.images[index]
        try:
            with Image.open(path) as image:
                resized = image.convert("RGB").resize(IMAGE_SIZE[::-1], Image.Resampling.BILINEAR)
        except FileNotFoundError:
            raise DataError(f"missing image {path}") from None
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{path}: not a readable image ({error})") from None
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        item: dict[str, Any] = {"image": pixels}
        item.update({task: self.labels[index, j] for j, task in enumerate(self.tasks)})
        item["meta"] = {"id": self.images[index], "scene": "", "view": 0}
        return item
