"""PASCAL-Context normals are labels only on Context classes that NYU also annotates (pascal_normals_valid_ids.md),
in the dataset, the loss and the metric; ``normals_valid_labels="all"`` keeps every pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from taskbalance.data import DataError, build_dataset
from taskbalance.data.export import export_synthetic
from taskbalance.data.io import save_mat
from taskbalance.tasks import build_task

#: Context ids from the reference's examples: bottle, chair, person (valid); sky, grass, unlabeled (not valid).
VALID, INVALID = (34, 72, 284), (360, 187, 0)


@pytest.fixture(scope="module")
def pascal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported PASCAL_MT folder whose first test image has a LabelMap of known classes in vertical stripes."""
    root = tmp_path_factory.mktemp("pascal") / "root"
    export_synthetic(root, "pascal", num_scenes=1, views_per_scene=2, resolution=(24, 36))
    sample_id = (root / "ImageSets" / "Context" / "val.txt").read_text().split()[0]
    stripes = np.repeat(np.array(VALID + INVALID, dtype=np.uint16), 6)  # 36 columns: 3 valid stripes, then 3 not
    save_mat({"LabelMap": np.tile(stripes, (24, 1))}, root / "pascal-context" / "trainval" / f"{sample_id}.mat")
    return root


def first_normals(root: Path, **options: object) -> torch.Tensor:
    dataset = build_dataset("pascal", "test", tasks=("normals",), root=root, resolution=None, **options)
    return dataset.load_sample(0)["normals"]


def test_only_pixels_of_nyu_classes_are_valid_by_default(pascal: Path) -> None:
    normals = first_normals(pascal)
    valid = normals.ne(0).any(dim=0)
    assert bool(valid[:, :18].all()) and not bool(valid[:, 18:].any())


def test_all_pixels_option_keeps_every_normal(pascal: Path) -> None:
    everywhere = first_normals(pascal, normals_valid_labels="all")
    assert bool(everywhere.ne(0).any(dim=0).all())
    assert torch.equal(everywhere[:, :, :18], first_normals(pascal)[:, :, :18])


def test_loss_and_metric_skip_the_invalid_classes(pascal: Path) -> None:
    target = first_normals(pascal)[None]
    spec = build_task("normals")
    good = target.clone()
    wrong_outside = torch.where(target.ne(0).any(dim=1, keepdim=True), good, -torch.ones_like(good))
    assert float(spec.loss(wrong_outside, target)) == pytest.approx(float(spec.loss(good, target)), abs=1e-6)
    meter = spec.meter()
    meter.update(wrong_outside, target)
    assert meter.compute()["mean"] == pytest.approx(0.0, abs=0.1)  # only the valid stripes are scored


@pytest.mark.parametrize("option", ["nyu", [], [34.5]])
def test_bad_option_is_a_clear_error(pascal: Path, option: object) -> None:
    with pytest.raises(DataError, match="normals_valid_labels must be"):
        first_normals(pascal, normals_valid_labels=option)
