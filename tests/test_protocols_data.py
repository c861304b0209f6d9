"""Loaders of the benchmarks' formats, round-tripped through files the tests write (never a real dataset)."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taskbalance.data import DataError
from taskbalance.protocols.check import check_protocol_data
from taskbalance.protocols.data import (
    NYUV2,
    CelebADataset,
    MTANDataset,
    MultiMNISTDataset,
    cityscapes_layout,
    overlay,
    read_mnist,
    standin_celeba,
    standin_mtan,
    standin_multimnist,
)
from taskbalance.protocols.data.augment import mtan_scale_crop_flip

H, W = 8, 12


def _write_mtan(root: Path, folder: str, count: int, label_folder: str = "label", normals: bool = True) -> dict:
    rng = np.random.default_rng(0)
    arrays = {}
    for i in range(count):
        arrays[i] = {
            "image": rng.random((H, W, 3)).astype(np.float32),
            label_folder: rng.integers(-1, 7, size=(H, W)).astype(np.float32),
            "depth": (rng.random((H, W, 1)) * 3).astype(np.float32),
        }
        if normals:
            n = rng.normal(size=(H, W, 3))
            arrays[i]["normal"] = (n / np.linalg.norm(n, axis=2, keepdims=True)).astype(np.float32)
        for sub, array in arrays[i].items():
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
            np.save(root / folder / sub / f"{i}.npy", array)
    return arrays


def test_mtan_nyuv2_round_trip(tmp_path):
    written = _write_mtan(tmp_path, "val", 2)
    ds = MTANDataset(NYUV2, tmp_path, split="test")
    assert len(ds) == 2 and ds.info.tasks == ("semseg", "depth", "normals") and not ds.info.has_val_split
    item = ds[1]
    source = written[1]
    assert item["image"].shape == (3, H, W) and torch.allclose(
        item["image"], torch.from_numpy(source["image"]).permute(2, 0, 1)
    )
    label = source["label"].astype(np.int64)
    assert torch.equal(item["semseg"], torch.from_numpy(np.where(label < 0, 255, label)))
    assert item["depth"].shape == (1, H, W) and torch.allclose(
        item["depth"][0], torch.from_numpy(source["depth"][..., 0])
    )
    assert item["normals"].shape == (3, H, W)
    assert item["meta"]["id"] == "val/1"


def test_mtan_cityscapes_reads_label_7_and_subsets_tasks(tmp_path):
    _write_mtan(tmp_path, "train", 3, label_folder="label_7", normals=False)
    ds = MTANDataset(cityscapes_layout(7), tmp_path, split="train", tasks=["depth"])
    assert ds.info.tasks == ("depth",) and set(ds[0]) == {"image", "depth", "meta"}
    assert MTANDataset(cityscapes_layout(7), tmp_path, "train").info.num_classes == {"semseg": 7}
    with pytest.raises(DataError, match="7 .* or 19"):
        cityscapes_layout(8)


def test_mtan_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        MTANDataset(NYUV2, tmp_path / "nothing")
    _write_mtan(tmp_path, "train", 3)
    with pytest.raises(DataError, match="'train' or 'test'"):
        MTANDataset(NYUV2, tmp_path, split="val")
    with pytest.raises(DataError, match="val"):
        MTANDataset(NYUV2, tmp_path, split="test")
    (tmp_path / "train" / "normal" / "2.npy").unlink()
    with pytest.raises(DataError, match="normal.* 2 files"):
        MTANDataset(NYUV2, tmp_path)
    np.save(tmp_path / "train" / "normal" / "2.npy", np.zeros((H, W, 3), np.float32))
    (tmp_path / "train" / "depth" / "1.npy").write_bytes(b"not numpy")
    ds = MTANDataset(NYUV2, tmp_path)
    with pytest.raises(DataError, match=r"depth/1\.npy: not a readable"):
        ds[1]
    np.save(tmp_path / "train" / "image" / "0.npy", np.full((H, W, 3), 255.0, np.float32))
    with pytest.raises(DataError, match=r"image/0\.npy.*expected \[0, 1\]"):
        ds[0]
    np.save(tmp_path / "train" / "label" / "2.npy", np.full((H, W), 13.0, np.float32))
    with pytest.raises(DataError, match=r"label/2\.npy: label values \[13\.0\]"):
        ds[2]


def test_mtan_errors_on_gaps_in_numbering(tmp_path):
    _write_mtan(tmp_path, "train", 3)
    for sub in ("image", "label", "depth", "normal"):
        (tmp_path / "train" / sub / "1.npy").rename(tmp_path / "train" / sub / "7.npy")
    with pytest.raises(DataError, match="1.npy is missing"):
        MTANDataset(NYUV2, tmp_path)


def test_mtan_augmentation_scales_depth_and_flips_normals():
    sample = {
        "image": torch.rand(3, 30, 40),
        "semseg": torch.randint(0, 5, (30, 40)),
        "depth": torch.full((1, 30, 40), 3.0),
        "normals": torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).repeat(1, 30, 40),
    }
    depths, signs = set(), set()
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        out = mtan_scale_crop_flip(sample, generator)
        assert out["image"].shape == (3, 30, 40) and out["semseg"].dtype == torch.long
        assert set(out["semseg"].unique().tolist()) <= set(range(5))
        depths.add(round(float(out["depth"].mean()), 4))
        signs.add(float(out["normals"][0].mean()))
        assert out["depth"].std() == 0
    assert depths == {3.0, 2.5, 2.0}  # 3 / {1, 1.2, 1.5}
    assert signs == {1.0, -1.0}


def _write_celeba(root: Path, flat: bool) -> None:
    images = root / ("img_align_celeba" if flat else "Img/img_align_celeba")
    images.mkdir(parents=True)
    names = [f"00000{i}.jpg" for i in range(1, 5)]
    for i, name in enumerate(names):
        Image.fromarray(np.full((218, 178, 3), 60 * i, np.uint8)).save(images / name)
    attr = root / ("list_attr_celeba.txt" if flat else "Anno/list_attr_celeba.txt")
    attr.parent.mkdir(parents=True, exist_ok=True)
    rows = ["1 -1", "-1 1", "1 1", "-1 -1"]
    attr.write_text("4\nSmiling Young\n" + "".join(f"{n} {r}\n" for n, r in zip(names, rows)))
    part = root / ("list_eval_partition.txt" if flat else "Eval/list_eval_partition.txt")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_text("".join(f"{n} {p}\n" for n, p in zip(names, (0, 0, 1, 2))))


@pytest.mark.parametrize("flat", [False, True])
def test_celeba_round_trip(tmp_path, flat):
    _write_celeba(tmp_path, flat)
    train = CelebADataset(tmp_path, "train")
    assert len(train) == 2 and train.info.tasks == ("Smiling", "Young")
    item = train[1]
    assert item["image"].shape == (3, 64, 64)
    assert float(item["image"].mean()) == pytest.approx(60 / 255, abs=2e-3)
    assert float(item["Smiling"]) == 0.0 and float(item["Young"]) == 1.0
    test = CelebADataset(tmp_path, "test", tasks=["Young"])
    assert len(test) == 1 and set(test[0]) == {"image", "Young", "meta"} and float(test[0]["Young"]) == 0.0


def test_celeba_errors(tmp_path):
    _write_celeba(tmp_path, flat=True)
    with pytest.raises(DataError, match="unknown: \\['Bald'\\]"):
        CelebADataset(tmp_path, tasks=["Bald"])
    (tmp_path / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="missing image .*000002.jpg"):
        CelebADataset(tmp_path)[1]
    (tmp_path / "img_align_celeba" / "000001.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match="000001.jpg: not a readable image"):
        CelebADataset(tmp_path)[0]
    attr = tmp_path / "list_attr_celeba.txt"
    attr.write_text(attr.read_text().replace("000003.jpg 1 1", "000003.jpg 1 0"))
    with pytest.raises(DataError, match="line 5"):
        CelebADataset(tmp_path)


def _idx(path: Path, magic: int, array: np.ndarray, compress: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def _reference_overlay(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """MGDA's construction with PIL doing the byte-scaled image's nearest resize."""
    canvas = np.zeros((36, 36))
    canvas[0:28, 0:28] = left
    canvas[6:34, 6:34] = right
    canvas[6:28, 6:28] = np.maximum(left[6:28, 6:28], right[0:22, 0:22])
    low, high = canvas.min(), canvas.max()
    scaled = ((canvas - low) * 255.0 / ((high - low) or 1.0)).clip(0, 255) + 0.5
    return np.asarray(Image.fromarray(scaled.astype(np.uint8)).resize((28, 28), Image.Resampling.NEAREST))


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 200, size=(6, 28, 28))
    labels = np.arange(6) % 10
    _idx(tmp_path / "t10k-images-idx3-ubyte", 2051, images, compress)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", 2049, labels, compress)
    read_images, read_labels = read_mnist(tmp_path, "test")
    assert np.array_equal(read_images, images) and np.array_equal(read_labels, labels)
    ds = MultiMNISTDataset.from_mnist(tmp_path, "test", seed=3)
    assert len(ds) == 6 and ds.info.tasks == ("left", "right")
    item = ds[2]
    assert item["image"].shape == (1, 28, 28) and int(item["left"]) == 2
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        read_mnist(tmp_path, "train")


def test_mnist_corrupt_files(tmp_path):
    _idx(tmp_path / "t10k-images-idx3-ubyte", 2049, np.zeros((2, 28, 28)), False)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", 2049, np.zeros(2), False)
    with pytest.raises(DataError, match="magic number 2051"):
        read_mnist(tmp_path, "test")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(
        (2051).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(8) + bytes(10)
    )
    with pytest.raises(DataError, match="truncated"):
        read_mnist(tmp_path, "test")


def test_overlay_matches_the_reference_construction():
    rng = np.random.default_rng(2)
    left, right = rng.integers(0, 256, size=(2, 3, 28, 28)).astype(np.uint8)
    left[0] = 0  # a blank left digit exercises the byte-scaling
    composed = overlay(left, right)
    for i in range(3):
        assert np.array_equal(composed[i], _reference_overlay(left[i].astype(float), right[i].astype(float)))


def test_multimnist_labels_follow_the_partners():
    # digit d is a constant image of value 10·d, so the right label identifies the right image
    images = np.stack([np.full((28, 28), 10 * d, np.uint8) for d in range(10)])
    ds = MultiMNISTDataset(images, np.arange(10), seed=5)
    for i in range(10):
        raw = overlay(images[i : i + 1], images[int(ds.right[i]) : int(ds.right[i]) + 1])[0]
        expected = (torch.from_numpy(raw).float() / 255 - 0.1307) / 0.3081
        assert torch.allclose(ds[i]["image"][0], expected) and int(ds[i]["left"]) == i


def test_standins_have_the_item_format():
    mtan = standin_mtan(NYUV2, 3, (32, 32))
    item = mtan[0]
    assert item["semseg"].dtype == torch.long and (item["semseg"] == 255).any() and (item["depth"] == 0).any()
    assert item["normals"].shape == (3, 32, 32)
    celeba = standin_celeba(10, attributes=4)
    assert celeba.info.tasks == ("attr_0", "attr_1", "attr_2", "attr_3") and celeba[0]["attr_0"].dtype == torch.float32
    mnist = standin_multimnist(8)
    assert mnist[0]["image"].shape == (1, 28, 28) and 0 <= int(mnist[0]["right"]) < 10


def test_check_lists_every_problem_without_writing(tmp_path):
    _write_mtan(tmp_path, "train", 2)
    _write_mtan(tmp_path, "val", 2)
    (tmp_path / "val" / "depth" / "1.npy").write_bytes(b"junk")
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    report = check_protocol_data("nyuv2-mtan", tmp_path)
    assert report.samples == 4 and len(report.problems) == 1
    assert report.problems[0].path == "test[1]" and "depth/1.npy" in report.problems[0].message
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
    missing = check_protocol_data("cityscapes", tmp_path / "none")
    assert not missing.ok and "does not exist" in missing.problems[0].message
