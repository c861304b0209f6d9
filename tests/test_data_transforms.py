"""Augmentation applies the same geometry to the image and every target, with each task's rules."""

from __future__ import annotations

import pytest
import torch

from taskbalance.conventions import IGNORE_VALUE
from taskbalance.data import Augmentation
from taskbalance.data.rng import AugmentationRNG, mix_seed
from taskbalance.data.transforms import IMAGENET_MEAN, crop_or_pad, hflip, normalize, resize


def make_sample(height: int = 12, width: int = 16) -> dict:
    generator = torch.Generator().manual_seed(0)
    normals = torch.randn(3, height, width, generator=generator)
    return {
        "image": torch.rand(3, height, width, generator=generator),
        "semseg": torch.randint(0, 5, (height, width), generator=generator),
        "human_parts": torch.randint(0, 7, (height, width), generator=generator),
        "depth": torch.rand(1, height, width, generator=generator) * 5 + 0.5,
        "normals": normals / normals.norm(dim=0, keepdim=True),
        "sal": torch.randint(0, 2, (1, height, width), generator=generator).float(),
        "edge": torch.randint(0, 2, (1, height, width), generator=generator).float(),
        "meta": {"id": "x", "scene": "s", "view": 0},
    }


def test_flip_twice_is_identity_and_negates_normal_x():
    sample = make_sample()
    flipped = hflip(sample)
    assert torch.equal(flipped["normals"][0], -sample["normals"][0].flip(-1))
    assert torch.equal(flipped["normals"][1:], sample["normals"][1:].flip(-1))
    assert torch.equal(flipped["semseg"], sample["semseg"].flip(-1))
    twice = hflip(flipped)
    for key in ("image", "semseg", "human_parts", "depth", "normals", "sal", "edge"):
        assert torch.equal(twice[key], sample[key]), key
    assert twice["meta"] == sample["meta"]


def test_resize_keeps_labels_and_depth_values():
    sample = make_sample()
    for size in ((24, 32), (7, 9)):
        out = resize(sample, size)
        assert out["image"].shape == (3, *size)
        for task in ("semseg", "human_parts", "sal", "edge"):
            assert set(out[task].unique().tolist()) <= set(sample[task].unique().tolist())
            assert out[task].dtype == sample[task].dtype
        # nearest neighbour: every depth value is one of the original metres, never rescaled or blended
        assert bool(torch.isin(out["depth"], sample["depth"]).all())
        assert bool(torch.isin(out["normals"][0], sample["normals"][0]).all())
    doubled = resize(sample, (24, 32))
    assert torch.equal(doubled["semseg"][::2, ::2], sample["semseg"])


def test_crop_and_pad_fill_ignore_values():
    sample = make_sample()
    out = crop_or_pad(sample, (16, 20), top=-2, left=-3)
    assert torch.equal(out["semseg"][2:14, 3:19], sample["semseg"])
    for task in ("semseg", "human_parts", "depth", "normals", "sal", "edge"):
        pad = out[task][..., :2, :]
        assert bool((pad == IGNORE_VALUE[task]).all()), task
    assert torch.allclose(out["image"][:, 0, 0], torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(normalize(out["image"])[:, 0, 0], torch.zeros(3), atol=1e-6)
    crop = crop_or_pad(sample, (5, 6), top=3, left=4)
    assert torch.equal(crop["depth"], sample["depth"][:, 3:8, 4:10])


def test_augmentation_geometry_is_shared_by_all_targets():
    """Encode the pixel's column in every target: after any augmentation they must still agree."""
    height, width = 20, 24
    columns = torch.arange(width).expand(height, width)
    sample = {
        "image": torch.zeros(3, height, width),
        "semseg": columns.clone(),
        "depth": columns[None].float() + 1,
        "sal": (columns[None] % 2).float(),
        "normals": torch.stack([torch.ones(height, width), torch.zeros(height, width), torch.zeros(height, width)]),
        "meta": {"id": "x", "scene": "s", "view": 0},
    }
    augment = Augmentation(scale_range=(0.5, 2.0))
    generator = torch.Generator().manual_seed(1)
    flips = 0
    for _ in range(20):
        out = augment(sample, generator)
        valid = out["semseg"] != IGNORE_VALUE["semseg"]
        assert out["semseg"].shape == (height, width)
        assert torch.equal(out["depth"][0][valid], out["semseg"][valid].float() + 1)
        assert torch.equal(out["sal"][0][valid], (out["semseg"][valid] % 2).float())
        assert bool((out["depth"][0][~valid] == 0).all()) and bool((out["sal"][0][~valid] == 255).all())
        rows = out["semseg"][valid.all(dim=1)]
        if len(rows):
            increasing = bool((rows[:, 1:] >= rows[:, :-1]).all())
            decreasing = bool((rows[:, 1:] <= rows[:, :-1]).all())
            assert increasing or decreasing
            # the normals' x component says which way the image was mirrored
            sign = float(out["normals"][0][valid].mean())
            assert sign == (1.0 if increasing else -1.0) or bool((rows == rows[:, :1]).all())
            flips += decreasing and not increasing
    assert 0 < flips < 20


def test_augmentation_is_reproducible_and_seeded():
    sample = make_sample()
    augment = Augmentation()
    a = augment(sample, torch.Generator().manual_seed(7))
    b = augment(sample, torch.Generator().manual_seed(7))
    c = augment(sample, torch.Generator().manual_seed(8))
    for key in ("image", "semseg", "normals"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["image"], c["image"])
    assert float(a["image"].min()) >= 0 and float(a["image"].max()) <= 1


def test_bad_augmentation_settings():
    with pytest.raises(ValueError):
        Augmentation(scale_range=(2.0, 0.5))
    with pytest.raises(ValueError):
        Augmentation(flip_prob=1.5)


def test_item_generator_is_a_function_of_seed_epoch_and_index():
    def draw(rng: AugmentationRNG, index: int) -> torch.Tensor:
        return torch.rand(3, generator=rng.generator(index))

    rng = AugmentationRNG(seed=4)
    first = [draw(rng, i) for i in range(3)]
    assert all(torch.equal(draw(rng, i), first[i]) for i in reversed(range(3)))  # order and repeats do not matter
    assert not torch.equal(first[0], first[1])  # a different draw per item
    rng.set_epoch(1)
    assert not torch.equal(draw(rng, 0), first[0])  # and per epoch
    other = AugmentationRNG(seed=4)  # e.g. a resumed run, or a DataLoader worker's copy
    other.set_epoch(1)
    assert torch.equal(draw(other, 0), draw(rng, 0))
    assert not torch.equal(draw(AugmentationRNG(seed=5), 0), first[0])
    torch.manual_seed(9)
    assert AugmentationRNG().seed == 9  # the default seed follows torch.manual_seed at construction
    assert mix_seed(1, "a") == mix_seed(1, "a") != mix_seed(1, "b")
