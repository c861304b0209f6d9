"""The synthetic scenes: exact, geometrically consistent labels; determinism; splits; quantity and quality options."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from taskbalance.conventions import TASK_NAMES
from taskbalance.data import DataError, build_dataset
from taskbalance.data.synthetic.dataset import DEFAULT_SCENES
from taskbalance.data.synthetic.render import OCCLUSION_JUMP
from taskbalance.data.synthetic.scenes import CLASSES, OBJECT_CLASSES, PARTS

SMALL = {"num_scenes": 3, "views_per_scene": 4, "resolution": (48, 64)}


@pytest.fixture(scope="module")
def train():
    return build_dataset("synthetic", "train", **SMALL)


def samples(dataset):
    return [dataset.load_sample(i) for i in range(len(dataset))]


def test_item_format(train):
    item = train[0]
    assert set(item) == {"image", *TASK_NAMES, "meta"}
    assert item["image"].shape == (3, 48, 64) and item["image"].dtype == torch.float32
    assert item["semseg"].dtype == torch.long and item["human_parts"].dtype == torch.long
    for task in ("depth", "sal", "edge"):
        assert item[task].shape == (1, 48, 64)
    assert item["normals"].shape == (3, 48, 64)
    assert train.info.num_classes == {"semseg": len(CLASSES), "human_parts": len(PARTS)}
    assert train.info.has_val_split
    assert item["meta"] == {"id": "train_000_000", "scene": "train_000", "view": 0}
    batch = next(iter(DataLoader(train, batch_size=3)))
    assert batch["image"].shape == (3, 3, 48, 64)
    assert batch["meta"]["scene"] == ["train_000"] * 3 and batch["meta"]["view"].tolist() == [0, 1, 2]


def test_labels_are_valid(train):
    for s in samples(train):
        assert int(s["semseg"].min()) >= 0 and int(s["semseg"].max()) < len(CLASSES)
        assert bool((s["depth"] > 0).all()) and bool(torch.isfinite(s["depth"]).all())
        torch.testing.assert_close(s["normals"].norm(dim=0), torch.ones(48, 64), atol=1e-4, rtol=0)
        assert float(s["image"].min()) >= 0.0 and float(s["image"].max()) <= 1.0


def test_saliency_is_the_object_mask_and_parts_live_on_objects(train):
    for s in samples(train):
        objects = torch.isin(s["semseg"], torch.tensor(OBJECT_CLASSES))
        assert torch.equal(s["sal"][0].bool(), objects)
        assert torch.equal(s["human_parts"] > 0, objects)


def test_normals_face_the_camera(train):
    # a visible surface's normal points against the viewing ray: n · (x, y, 1) < 0 in the camera frame
    fx, fy, cx, cy = train.intrinsics.tolist()
    v, u = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    rays = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)])
    for s in samples(train):
        assert bool(((s["normals"] * rays).sum(0) < 1e-4).all())


def test_normals_agree_with_depth_gradients_on_planes(train):
    """Back-project floor, rug and ceiling pixels with the depth label; the plane's normal must match."""
    fx, fy, cx, cy = train.intrinsics.tolist()
    v, u = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    checked = 0
    for s in samples(train):
        z = s["depth"][0]
        points = torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z])
        along_u = points[:, :-1, 1:] - points[:, :-1, :-1]
        along_v = points[:, 1:, :-1] - points[:, :-1, :-1]
        from_depth = torch.linalg.cross(along_u, along_v, dim=0)
        from_depth = from_depth / from_depth.norm(dim=0, keepdim=True)
        labels = s["semseg"]
        flat = torch.isin(labels, torch.tensor([CLASSES.index("floor"), CLASSES.index("rug")]))
        ceiling = labels == CLASSES.index("ceiling")
        for plane in (flat, ceiling):
            inside = plane[:-1, :-1] & plane[1:, :-1] & plane[:-1, 1:] & ~s["edge"][0].bool()[:-1, :-1]
            cosine = (from_depth * s["normals"][:, :-1, :-1]).sum(0)[inside].abs()
            checked += int(inside.sum())
            assert bool((cosine > 0.999).all()), float(cosine.min())
    assert checked > 1000


def test_edges_lie_on_class_or_depth_boundaries(train):
    for s in samples(train):
        labels, depth, edge = s["semseg"], s["depth"][0], s["edge"][0].bool()
        class_change = torch.zeros_like(edge)
        depth_jump = torch.zeros_like(edge)
        class_change[:, :-1] |= labels[:, :-1] != labels[:, 1:]
        class_change[:-1, :] |= labels[:-1, :] != labels[1:, :]
        for a, b, out in ((depth[:, :-1], depth[:, 1:], depth_jump[:, :-1]), (depth[:-1], depth[1:], depth_jump[:-1])):
            out |= (a - b).abs() > OCCLUSION_JUMP * torch.minimum(a, b)
        assert bool((edge <= (class_change | depth_jump)).all()), "an edge pixel lies on no boundary"
        assert bool((class_change <= edge).all()), "a class boundary is not an edge"
        assert 0.005 < float(edge.float().mean()) < 0.3  # thin and sparse


def test_deterministic_and_seeded():
    a = build_dataset("synthetic", "val", num_scenes=1, views_per_scene=2, resolution=(32, 40), seed=5)
    b = build_dataset("synthetic", "val", num_scenes=2, views_per_scene=3, resolution=(32, 40), seed=5)
    c = build_dataset("synthetic", "val", num_scenes=1, views_per_scene=2, resolution=(32, 40), seed=6)
    for i in range(2):  # same (seed, scene, view) → same item, whatever the split's size
        for key in ("image", "semseg", "depth"):
            assert torch.equal(a[i][key], b[i][key])
    assert not torch.equal(a[0]["image"], c[0]["image"])


def test_scene_counts_per_split():
    counts = {"train": 3, "test": 2}  # val keeps its default
    sizes = {s: len(build_dataset("synthetic", s, num_scenes=counts, views_per_scene=2, resolution=(16, 20)))
             for s in ("train", "val", "test")}
    assert sizes == {"train": 6, "val": 2 * DEFAULT_SCENES["val"], "test": 4}
    one = build_dataset("synthetic", "test", num_scenes=2, views_per_scene=2, resolution=(16, 20))
    assert torch.equal(one[3]["image"], build_dataset("synthetic", "test", num_scenes=counts, views_per_scene=2,
                                                      resolution=(16, 20))[3]["image"])
    for bad, message in (
        ({"tran": 3}, "unknown split"),
        ({"train": 0}, "at least one scene"),
        (0, "at least one scene"),
    ):
        with pytest.raises(DataError, match=message):
            build_dataset("synthetic", "train", num_scenes=bad, views_per_scene=2, resolution=(16, 20))


def test_splits_are_disjoint():
    splits = {
        s: build_dataset("synthetic", s, num_scenes=2, views_per_scene=2, resolution=(32, 40))
        for s in ("train", "val", "test")
    }
    scenes = {s: {d.load_sample(i)["meta"]["scene"] for i in range(len(d))} for s, d in splits.items()}
    assert (
        not (scenes["train"] & scenes["val"])
        and not (scenes["train"] & scenes["test"])
        and not (scenes["val"] & scenes["test"])
    )
    images = {s: torch.stack([d.load_sample(i)["image"] for i in range(len(d))]) for s, d in splits.items()}
    for one, other in (("train", "val"), ("train", "test"), ("val", "test")):
        distance = torch.cdist(images[one].flatten(1), images[other].flatten(1))
        assert float(distance.min()) > 1.0


def test_data_quantity_options(train):
    fewer_scans = build_dataset("synthetic", "train", scans_per_scene=0.5, **SMALL)
    two_scans = build_dataset("synthetic", "train", scans_per_scene=2, **SMALL)
    one_scene = build_dataset("synthetic", "train", scene_subset=1, **SMALL)
    named = build_dataset("synthetic", "train", scene_subset=["train_002"], **SMALL)
    assert len(fewer_scans) == len(two_scans) == 3 * 2
    assert len(one_scene) == 4 and len(named) == 4
    for subset in (fewer_scans, one_scene, named):
        assert set(subset.indices) <= set(train.indices)
        for i in range(len(subset)):
            assert torch.equal(subset[i]["semseg"], train[subset.indices[i]]["semseg"])
    per_scene = {}
    for i in range(len(fewer_scans)):
        meta = fewer_scans.load_sample(i)["meta"]
        per_scene.setdefault(meta["scene"], []).append(meta["view"])
    assert {scene: len(views) for scene, views in per_scene.items()} == {f"train_00{k}": 2 for k in range(3)}
    assert {named.load_sample(i)["meta"]["scene"] for i in range(4)} == {"train_002"}
    assert fewer_scans.indices == build_dataset("synthetic", "train", scans_per_scene=0.5, **SMALL).indices


@pytest.mark.parametrize(
    "bad",
    [
        {"scans_per_scene": 0},
        {"scans_per_scene": 1.5},
        {"scene_subset": 9},
        {"scene_subset": ["nope"]},
        {"frobnicate": 1},
    ],
)
def test_bad_options_raise(bad):
    with pytest.raises(DataError):
        build_dataset("synthetic", "train", **{**SMALL, **bad})


def test_label_noise_follows_the_paper(train):
    noisy = build_dataset("synthetic", "train", label_noise={"depth_std": 0.2, "normals_std": 0.1}, **SMALL)
    assert torch.equal(noisy[0]["semseg"], noisy[0]["semseg"])  # fixed per sample across epochs
    for i in range(len(train)):
        clean, dirty = train[i], noisy[i]
        for task in ("sal", "edge", "human_parts"):
            assert torch.equal(clean[task], dirty[task])
        torch.testing.assert_close(clean["image"], dirty["image"])
        changed = clean["semseg"] != dirty["semseg"]
        categories = clean["semseg"][changed].unique()
        assert 0 < len(categories) <= 5
        for category in categories.tolist():  # flipped at rate 0.5, each category to one wrong class
            of_category = clean["semseg"] == category
            rate = float(changed[of_category].float().mean())
            if int(of_category.sum()) > 400:
                assert 0.4 < rate < 0.6
            targets = dirty["semseg"][of_category & changed].unique()
            assert len(targets) == 1 and int(targets) != category
        residual = dirty["depth"] - clean["depth"]
        assert 0.17 < float(residual.std()) < 0.23
        torch.testing.assert_close(dirty["normals"].norm(dim=0), torch.ones(48, 64), atol=1e-4, rtol=0)
        assert float((dirty["normals"] - clean["normals"]).abs().mean()) > 0.02


def test_augmented_items_stay_consistent(train):
    augmented = build_dataset("synthetic", "train", augment=True, augment_seed=3, **SMALL)
    for i in range(len(augmented)):
        item = augmented[i]
        assert item["image"].shape == (3, 48, 64)
        valid = item["semseg"] != 255
        objects = torch.isin(item["semseg"], torch.tensor(OBJECT_CLASSES))
        assert torch.equal(item["sal"][0][valid].bool(), objects[valid])
        assert bool((item["sal"][0][~valid] == 255).all()) and bool((item["depth"][0][~valid] == 0).all())
        norms = item["normals"].norm(dim=0)
        assert bool(((norms - 1).abs() < 1e-4)[valid].all()) and bool((norms[~valid] == 0).all())


def test_unknown_split_and_root():
    with pytest.raises(DataError, match="split"):
        build_dataset("synthetic", "dev", **SMALL)
    with pytest.raises(DataError, match="root"):
        build_dataset("synthetic", "train", root="/tmp", **SMALL)


def test_augmentation_depends_on_seed_epoch_and_index_only():
    dataset = build_dataset("synthetic", "train", augment=True, augment_seed=5, num_scenes=1, views_per_scene=1,
                            resolution=(32, 40))
    dataset.indices = [0] * 4  # the same view four times: only the augmentation differs
    dataset.set_epoch(2)
    loaded = [batch["image"][0] for batch in DataLoader(dataset, batch_size=1, num_workers=2)]
    assert not torch.equal(loaded[0], loaded[1])  # items 0 and 1 come from different workers
    assert all(torch.equal(dataset[i]["image"], loaded[i]) for i in reversed(range(4)))  # nor workers nor order matter
    dataset.set_epoch(3)
    assert not torch.equal(dataset[0]["image"], loaded[0])  # another epoch, another augmentation
