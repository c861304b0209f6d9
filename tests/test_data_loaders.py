"""NYUD-v2, PASCAL-Context and Replica loaders, end to end on exported files; bad input; the checker."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taskbalance.conventions import IGNORE_INDEX
from taskbalance.data import DataError, build_dataset
from taskbalance.data.check import check_dataset
from taskbalance.data.edges import context_edges
from taskbalance.data.export import export_synthetic

OPTIONS = {"num_scenes": 2, "views_per_scene": 3, "resolution": (32, 40)}


@pytest.fixture(scope="module")
def synthetic():
    return {split: build_dataset("synthetic", split, **OPTIONS) for split in ("train", "test")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    roots = {}
    for layout in ("nyud", "nyudv2", "pascal"):
        roots[layout] = tmp_path_factory.mktemp(layout) / "root"
        export_synthetic(roots[layout], layout, **OPTIONS)
    return roots


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("layout, name", [("nyud", "NYUD_MT"), ("nyudv2", "NYUDv2")])
def test_nyud_reads_exported_files_back(exported, synthetic, layout, name):
    for split in ("train", "test"):
        loaded = build_dataset("nyud", split, root=exported[layout])
        original = synthetic[split]
        assert loaded.info.metadata["layout"] == name and not loaded.info.has_val_split
        assert loaded.info.num_classes == {"semseg": 40} and loaded.info.edge_max_dist == 0.011
        assert len(loaded) == len(original)
        for i in range(len(loaded)):
            a, b = loaded.load_sample(i), original.load_sample(i)
            assert a["meta"]["id"] == b["meta"]["id"]
            for task in ("semseg", "depth", "edge"):
                assert torch.equal(a[task], b[task]), task
            tolerance = 1e-4 if layout == "nyud" else 1.5 / 127.5  # renormalised floats, or 8-bit PNG
            torch.testing.assert_close(a["normals"], b["normals"], atol=tolerance, rtol=0)
            if layout == "nyudv2":  # PNG: exact up to 8-bit quantisation
                torch.testing.assert_close(a["image"], (b["image"] * 255).round() / 255, atol=1e-6, rtol=0)
            else:  # JPEG
                assert float((a["image"] - b["image"]).abs().mean()) < 0.04


def test_pascal_reads_exported_files_back(exported, synthetic):
    # every normal kept: the exported LabelMap holds synthetic classes (test_data_pascal_normals.py: the default)
    loaded = build_dataset("pascal", "test", root=exported["pascal"], resolution=None, normals_valid_labels="all")
    assert loaded.info.num_classes == {"semseg": 21, "human_parts": 7} and loaded.info.edge_max_dist == 0.0075
    original = synthetic["test"]
    for i in range(len(loaded)):
        a, b = loaded.load_sample(i), original.load_sample(i)
        assert torch.equal(a["semseg"], b["semseg"]) and torch.equal(a["sal"], b["sal"])
        if bool((b["human_parts"] > 0).any()):
            assert torch.equal(a["human_parts"], b["human_parts"])
        else:  # no person in the image: all ignore, as in ASTMT
            assert bool((a["human_parts"] == IGNORE_INDEX).all())
        assert torch.equal(a["edge"][0], context_edges(b["semseg"] + 1))  # the exported LabelMap is semseg + 1
        torch.testing.assert_close(a["normals"], b["normals"], atol=1.5 / 127.5, rtol=0)
    resized = build_dataset("pascal", "test", root=exported["pascal"], tasks=("semseg",))
    assert resized[0]["image"].shape == (3, 512, 512) and resized[0]["semseg"].shape == (512, 512)


def test_pascal_parts_only_drops_images_without_people(exported, synthetic):
    parts_only = build_dataset("pascal", "train", tasks=("human_parts",), root=exported["pascal"], resolution=None)
    with_people = [
        i for i in range(len(synthetic["train"])) if bool((synthetic["train"].load_sample(i)["human_parts"] > 0).any())
    ]
    assert len(parts_only) == len(with_people)


def test_layout_detection_and_bad_roots(tmp_path, exported):
    with pytest.raises(DataError, match="does not exist"):
        build_dataset("nyud", root=tmp_path / "missing")
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="layout"):
        build_dataset("nyud", root=tmp_path)
    with pytest.raises(DataError, match="validation split"):
        build_dataset("nyud", "val", root=exported["nyud"])
    with pytest.raises(DataError, match="pass root"):
        build_dataset("pascal")


def copy_tree(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_missing_split_file_and_missing_files_are_named(tmp_path, exported):
    root = copy_tree(exported["nyud"], tmp_path / "nyud")
    (root / "gt_sets" / "val.txt").unlink()
    with pytest.raises(DataError, match=r"gt_sets/val\.txt"):
        build_dataset("nyud", "test", root=root)
    first = (root / "gt_sets" / "train.txt").read_text().split()[1]
    (root / "depth" / f"{first}.npy").unlink()
    with pytest.raises(DataError, match=rf"depth/{first}\.npy"):
        build_dataset("nyud", "train", root=root)
    assert len(build_dataset("nyud", "train", tasks=("semseg",), root=root)) == 6  # depth not needed


def test_corrupt_image_raises_with_its_name_instead_of_shifting(tmp_path, exported):
    root = copy_tree(exported["nyudv2"], tmp_path / "nyudv2")
    ids = (root / "gt_sets" / "train.txt").read_text().split()
    (root / "images" / f"{ids[2]}.png").write_bytes(b"\x89PNG broken")
    dataset = build_dataset("nyud", "train", root=root)
    assert dataset[1]["meta"]["id"] == ids[1]
    with pytest.raises(DataError, match=rf"images/{ids[2]}\.png.*corrupt"):
        dataset[2]
    assert dataset[3]["meta"]["id"] == ids[3]


def test_check_lists_every_problem_and_modifies_nothing(tmp_path, exported):
    root = copy_tree(exported["nyud"], tmp_path / "nyud")
    assert check_dataset(root, "nyud").ok
    ids = (root / "gt_sets" / "train.txt").read_text().split()
    (root / "images" / f"{ids[0]}.jpg").write_bytes(b"not a jpeg")
    (root / "edge" / f"{ids[1]}.npy").unlink()
    labels = np.asarray(Image.open(root / "segmentation" / f"{ids[2]}.png")).copy()
    labels[0, 0] = 77
    Image.fromarray(labels).save(root / "segmentation" / f"{ids[2]}.png")
    np.save(root / "depth" / f"{ids[3]}.npy", np.ones((5, 5), dtype=np.float32))
    before = digest(root)
    report = check_dataset(root, "nyud")
    assert digest(root) == before
    assert report.samples == 12 and report.layout == "NYUD_MT"
    found = {
        (Path(p.path).relative_to(root).as_posix(), kind)
        for p in report.problems
        for kind in ("corrupt or truncated", "missing", "out of range", "but the image")
        if kind in p.message
    }
    assert found == {
        (f"images/{ids[0]}.jpg", "corrupt or truncated"),
        (f"edge/{ids[1]}.npy", "missing"),
        (f"segmentation/{ids[2]}.png", "out of range"),
        (f"depth/{ids[3]}.npy", "but the image"),
    }
    (root / "gt_sets" / "val.txt").unlink()
    assert any("val.txt" in p.path for p in check_dataset(root, "nyud").problems)


def test_pascal_check_passes_on_export(exported):
    report = check_dataset(exported["pascal"], "pascal")
    assert report.ok and report.samples == 12


def test_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="not an empty folder"):
        export_synthetic(tmp_path, "nyud", **OPTIONS)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def write_replica(root: Path, scenes: dict[str, int], source) -> dict[str, dict]:
    """A tiny Omnidata-style Replica export written from synthetic samples; returns the samples by id."""
    written = {}
    index = 0
    for scene, views in scenes.items():
        for view in range(views):
            sample = source.load_sample(index % len(source))
            index += 1
            stem = f"point_{view}_view_{view % 2}"
            domains = ("rgb", "semantic", "depth_zbuffer", "normal")
            folder = {domain: root / domain / "replica" / scene for domain in domains}
            for path in folder.values():
                path.mkdir(parents=True, exist_ok=True)
            Image.fromarray((sample["image"].permute(1, 2, 0) * 255).round().byte().numpy()).save(
                folder["rgb"] / f"{stem}_domain_rgb.png"
            )
            Image.fromarray((sample["semseg"] + 1).byte().numpy()).save(
                folder["semantic"] / f"{stem}_domain_semantic.png"
            )
            depth = (sample["depth"][0] * 512).round().numpy().astype(np.uint16)
            depth[0, 0] = 65535
            Image.fromarray(depth).save(folder["depth_zbuffer"] / f"{stem}_domain_depth_zbuffer.png")
            Image.fromarray(((sample["normals"].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()).save(
                folder["normal"] / f"{stem}_domain_normal.png"
            )
            written[f"{scene}/{stem}"] = sample
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(list(scenes)[:2]) + "\n")
    (root / "splits" / "val.txt").write_text(list(scenes)[2] + "\n")
    (root / "splits" / "test.txt").write_text(list(scenes)[2] + "\n")
    return written


def test_replica_loader_and_quantity_options(tmp_path, synthetic):
    written = write_replica(tmp_path, {"room_a": 4, "room_b": 4, "office": 2}, synthetic["train"])
    train = build_dataset("replica", "train", root=tmp_path)
    assert len(train) == 8 and train.info.has_val_split and train.info.tasks == ("semseg", "depth", "normals")
    for i in range(len(train)):
        item = train.load_sample(i)
        original = written[item["meta"]["id"]]
        assert item["meta"]["scene"] == item["meta"]["id"].split("/")[0]
        expected = original["semseg"].clone()  # stored ids are class + 1; 0 would be ignored
        assert torch.equal(item["semseg"], expected + 1)
        assert float(item["depth"][0, 0, 0]) == 0.0  # 65535 marks invalid depth
        torch.testing.assert_close(item["depth"][:, 1:, 1:], original["depth"][:, 1:, 1:], atol=1 / 1024, rtol=0)
        torch.testing.assert_close(item["normals"], original["normals"], atol=1.5 / 127.5, rtol=0)
    assert len(build_dataset("replica", "train", root=tmp_path, scans_per_scene=0.5)) == 4
    one_scene = build_dataset("replica", "train", root=tmp_path, scene_subset=1)
    assert len(one_scene) == 4 and len({one_scene.load_sample(i)["meta"]["scene"] for i in range(4)}) == 1
    assert len(build_dataset("replica", "val", root=tmp_path)) == 2
    noisy = build_dataset("replica", "train", root=tmp_path, label_noise=True)
    assert not torch.equal(noisy[0]["depth"], train[0]["depth"])
    with pytest.raises(DataError, match="num_classez|invalid options"):
        build_dataset("replica", "train", root=tmp_path, num_classez=3)
