"""PASCAL human parts: an image whose persons carry no part annotation is ignored (255 everywhere), like an image
without a person; the reference evaluation (ASTMT/MTLP ``eval_human_parts.py``) skips such images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.data import build_dataset
from taskbalance.data.export import export_synthetic
from taskbalance.data.io import save_mat
from taskbalance.data.pascal import HUMAN_PART_GROUPS, PERSON_CLASS

SIZE = (24, 36)
OBJECT = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
PART = [("part_name", "O"), ("mask", "O")]


def person(mask: np.ndarray, parts: dict[str, np.ndarray]) -> tuple[object, ...]:
    """A PASCAL-Part person object; no parts gives the empty 0×0 struct array of the real files."""
    part_array = np.zeros((1, len(parts)) if parts else (0, 0), dtype=PART)
    for column, (name, part_mask) in enumerate(parts.items()):
        part_array[0, column] = (name, part_mask.astype(np.uint8))
    return ("person", np.array([[PERSON_CLASS]]), mask.astype(np.uint8), part_array)


def write_anno(path: Path, people: list[tuple[object, ...]]) -> None:
    objects = np.zeros((1, len(people)), dtype=OBJECT)
    for column, obj in enumerate(people):
        objects[0, column] = obj
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = (path.stem, objects)
    save_mat({"anno": anno}, path)


@pytest.fixture(scope="module")
def pascal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Exported PASCAL_MT folder; test image 0: one person without parts, 1: a person without parts next to one
    with a head."""
    root = tmp_path_factory.mktemp("pascal") / "root"
    export_synthetic(root, "pascal", num_scenes=1, views_per_scene=2, resolution=SIZE)
    ids = (root / "ImageSets" / "Context" / "val.txt").read_text().split()
    left, right = np.zeros(SIZE, bool), np.zeros(SIZE, bool)
    left[:, :10], right[:, 20:] = True, True
    head = np.zeros(SIZE, bool)
    head[:5, 20:] = True
    write_anno(root / "human_parts" / f"{ids[0]}.mat", [person(left, {})])
    write_anno(root / "human_parts" / f"{ids[1]}.mat", [person(left, {}), person(right, {"head": head})])
    return root, ids


def parts_of(root: Path, tasks: tuple[str, ...]) -> dict[str, torch.Tensor]:
    dataset = build_dataset("pascal", "test", tasks=tasks, root=root, resolution=None)
    return {dataset.ids[i]: dataset.load_sample(i)["human_parts"] for i in range(len(dataset))}


def test_persons_without_parts_are_ignored(pascal: tuple[Path, list[str]]) -> None:
    root, ids = pascal
    parts = parts_of(root, ("semseg", "human_parts"))
    assert bool((parts[ids[0]] == IGNORE_INDEX).all())


def test_a_person_with_parts_keeps_the_image(pascal: tuple[Path, list[str]]) -> None:
    root, ids = pascal
    labels = parts_of(root, ("semseg", "human_parts"))[ids[1]]
    expected = torch.zeros(SIZE, dtype=torch.long)
    expected[:5, 20:] = HUMAN_PART_GROUPS["head"]
    assert torch.equal(labels, expected)  # the person without parts stays background, as in the reference


def test_parts_only_leaves_out_images_without_part_labels(pascal: tuple[Path, list[str]]) -> None:
    root, ids = pascal
    assert ids[0] not in parts_of(root, ("human_parts",)) and ids[1] in parts_of(root, ("human_parts",))
