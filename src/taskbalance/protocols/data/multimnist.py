"""MultiMNIST built from the user's MNIST files exactly as the MGDA paper builds it (Sener & Koltun, NeurIPS 2018,
``isl-org/MultiObjectiveOptimization multi_task/loaders/multi_mnist_loader.py``).

Every MNIST image is the *left* digit of one example; a uniformly drawn image is the *right* digit. The left
digit goes to ``[0:28, 0:28]`` of a 36×36 canvas, the right one to ``[6:34, 6:34]`` and the overlap keeps the
maximum; the canvas is byte-scaled to [0, 255] (``scipy.misc.imresize``'s ``bytescale``) and resized to 28×28 with
nearest neighbour (PIL). Items are normalised with MNIST's mean 0.1307 and std 0.3081 (MGDA ``global_transformer``).
MGDA draws partners from NumPy's unseeded global generator; we draw them from a seeded one, so a split is
reproducible. 60000 train / 10000 test examples.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from taskbalance.data import DataError, DatasetInfo
from taskbalance.protocols.data.base import ProtocolDataset

#: MNIST file stems per split (``.gz`` also accepted); idx magic numbers of image and label files.
MNIST_FILES: dict[str, tuple[str, str]] = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                                           "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
CANVAS, DIGIT, OFFSET = 36, 28, 6
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
TASKS: tuple[str, ...] = ("left", "right")


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot be read ({error})") from None
    header = 4 * (1 + dims)
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise DataError(f"{path}: not an MNIST idx file (expected magic number {magic})")
    shape = tuple(int.from_bytes(data[4 * i : 4 * i + 4], "big") for i in range(1, dims + 1))
    if len(data) != header + int(np.prod(shape)):
        raise DataError(f"{path}: truncated or corrupt (header announces {'×'.join(map(str, shape))} bytes of data)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _locate(root: Path, stem: str) -> Path:
    for folder in (root, root / "MNIST" / "raw"):
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"multimnist: {stem}[.gz] not found in {root} or {root / 'MNIST' / 'raw'}")


def read_mnist(root: Path | str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images (N×28×28 uint8) and labels (N) of ``split`` (``train`` or ``test``) from the idx files."""
    if split not in MNIST_FILES:
        raise DataError(f"multimnist: split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"multimnist: MNIST folder {root} does not exist")
    image_stem, label_stem = MNIST_FILES[split]
    images = _read_idx(_locate(root, image_stem), IMAGE_MAGIC, 3)
    labels = _read_idx(_locate(root, label_stem), LABEL_MAGIC, 1)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (DIGIT, DIGIT):
        raise DataError(
            f"multimnist: {split} has {images.shape[0]} images of {images.shape[1:]} but {labels.shape[0]} labels"
        )
    if labels.max(initial=0) > 9:
        raise DataError(f"multimnist: {split} labels must be digits 0-9, found {int(labels.max())}")
    return images, labels


@cache
def _nearest_source_indices() -> np.ndarray:
    """Source row/column of each of the 28 output rows/columns of PIL's nearest-neighbour 36→28 resize."""
    ramp = Image.fromarray(np.tile(np.arange(CANVAS, dtype=np.uint8), (CANVAS, 1)))
    return np.asarray(ramp.resize((DIGIT, DIGIT), Image.Resampling.NEAREST))[0].astype(np.int64)


def overlay(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The 28×28 uint8 MultiMNIST images of digit pairs (N×28×28 each), built as MGDA's loader does."""
    canvas = np.zeros((left.shape[0], CANVAS, CANVAS), dtype=np.float64)
    canvas[:, :DIGIT, :DIGIT] = left
    canvas[:, OFFSET : OFFSET + DIGIT, OFFSET : OFFSET + DIGIT] = right
    canvas[:, OFFSET:DIGIT, OFFSET:DIGIT] = np.maximum(
        left[:, OFFSET:, OFFSET:], right[:, : DIGIT - OFFSET, : DIGIT - OFFSET]
    )
    low = canvas.min(axis=(1, 2), keepdims=True)
    span = canvas.max(axis=(1, 2), keepdims=True) - low
    scaled = ((canvas - low) * (255.0 / np.where(span == 0, 1.0, span))).clip(0, 255) + 0.5
    index = _nearest_source_indices()
    return scaled.astype(np.uint8)[:, index[:, None], index[None, :]]


class MultiMNISTDataset(ProtocolDataset):
    """MultiMNIST examples from digit images and labels: tasks ``left`` and ``right`` (class ids 0-9).

    Build it from files with :meth:`from_mnist`, or from any digit arrays (the CPU stand-in uses drawn glyphs).

    Args:
        images: N×28×28 uint8 digits; labels: N digit labels; seed: seed of the partner draw; name: dataset name.
    """

    CHUNK = 4096

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int = 0, name: str = "multimnist") -> None:
        partners = np.random.default_rng(seed).integers(0, len(images), size=len(images))
        composed = [overlay(images[s : s + self.CHUNK], images[partners[s : s + self.CHUNK]])
                    for s in range(0, len(images), self.CHUNK)]
        pixels = torch.from_numpy(np.concatenate(composed)).float() / 255.0
        self.images = ((pixels - MNIST_MEAN) / MNIST_STD)[:, None]
        self.left = torch.from_numpy(labels.astype(np.int64))
        self.right = self.left[torch.from_numpy(partners)]
        self.info = DatasetInfo(
            name, TASKS, {"left": 10, "right": 10}, 0.0, False, {"seed": seed, "examples": len(images)}
        )

    @classmethod
    def from_mnist(cls, root: Path | str, split: str = "train", seed: int = 0) -> MultiMNISTDataset:
        """The ``train`` (60k) or ``test`` (10k) MultiMNIST split from MNIST's idx files under ``root``."""
        dataset = cls(*read_mnist(root, split), seed=seed)
        dataset.info = DatasetInfo("multimnist", TASKS, {"left": 10, "right": 10}, 0.0, False,
                                   {"root": str(root), "split": split, "seed": seed})
        return dataset

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "left": self.left[index], "right": self.right[index],
                "meta": {"id": str(index % len(self)), "scene": "", "view": 0}}
