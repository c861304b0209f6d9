"""Backbones: names, parameter counts against timm's reference numbers, and weight loading (never downloading)."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from taskbalance.models import MissingWeightsError, ModelError, build_backbone, build_model, count_parameters
from taskbalance.models.backbones import BACKBONES, evenly_spaced_blocks
from taskbalance.models.pretrained import cached_timm_weights

#: Parameter counts of the timm ImageNet classifiers (timm model cards / ``timm.create_model(...)``).
TIMM_REFERENCE = {"resnet18": 11_689_512, "resnet50": 25_557_032, "vit_tiny_patch16_224": 5_717_416,
                  "vit_base_patch16_224": 86_567_656}
#: Their 1000-class heads: ``fc`` (ResNets) and ``head`` (ViTs), weights + biases.
CLASSIFIER = {"resnet18": 512 * 1000 + 1000, "resnet50": 2048 * 1000 + 1000, "vit_tiny_patch16_224": 192 * 1000 + 1000,
              "vit_base_patch16_224": 768 * 1000 + 1000}


@pytest.mark.parametrize(("name", "timm_name"), [("resnet18", "resnet18"), ("resnet50", "resnet50"),
                                                  ("vit_t", "vit_tiny_patch16_224"), ("vit_b", "vit_base_patch16_224")])
def test_parameter_counts_are_timm_reference_minus_the_classifier(name: str, timm_name: str) -> None:
    with torch.device("meta"):
        assert count_parameters(timm.create_model(timm_name)) == TIMM_REFERENCE[timm_name]
        assert count_parameters(build_backbone(name)) == TIMM_REFERENCE[timm_name] - CLASSIFIER[timm_name]


def test_hrnet18_is_timm_small_v2_without_its_classification_branch() -> None:
    with torch.device("meta"):
        full = timm.create_model("hrnet_w18_small_v2")
        classification = ("incre_modules", "downsamp_modules", "final_layer", "classifier")
        expected = sum(count_parameters(m) for n, m in full.named_children() if n not in classification)
        backbone = build_backbone("hrnet18")
    assert count_parameters(backbone) == expected == 3_860_720
    assert backbone.channels == (18, 36, 72, 144) and backbone.reductions == (4, 8, 16, 32)


def test_dilated_and_multi_scale_resnets() -> None:
    dense = build_backbone("tiny")
    assert dense.reductions == (8,) and [f.shape[-1] for f in dense(torch.randn(1, 3, 64, 64))] == [8]
    multi = build_backbone("tiny", multi_scale=True)
    assert multi.reductions == (4, 8, 16, 32) and multi.channels == (8, 16, 24, 32)


def test_vit_levels_are_evenly_spaced_blocks() -> None:
    assert evenly_spaced_blocks(24, 4) == [5, 11, 17, 23]  # InvPT's ViT-L blocks 6, 12, 18, 24
    assert evenly_spaced_blocks(12, 1) == [11]
    backbone = build_backbone("tiny_vit", num_levels=4)
    assert backbone.block_indices == [0, 1, 2]
    assert [tuple(f.shape) for f in backbone(torch.randn(2, 3, 32, 48))] == [(2, 64, 4, 6)] * 3


def test_paper_table_viii_names_are_registered() -> None:
    table_viii = {"vit_base_patch16_384.augreg_in1k", "vit_base_patch16_224.augreg_in21k",
                  "vit_base_patch16_384.augreg_in21k_ft_in1k", "vit_base_patch16_clip_384", "samvit_base_patch16",
                  "vit_base_patch16_224.dino", "vit_base_patch14_reg4_dinov2"}
    assert table_viii <= {spec.timm_name for spec in BACKBONES.values()}
    assert all(timm.is_model(name) for name in table_viii)


def test_bad_backbone_options() -> None:
    with pytest.raises(
        ModelError, match="unknown backbone 'vit_l'; available: tiny, resnet18, resnet50, hrnet18, tiny_vit"
    ):
        build_backbone("vit_l")
    with pytest.raises(ValueError, match="num_levels"):
        build_backbone("tiny_vit", multi_scale=True)
    with pytest.raises(ValueError, match="ViT backbones"):
        build_backbone("tiny", num_levels=3)


def _tiny_resnet_checkpoint() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return timm.create_model("resnet18", channels=(8, 16, 24, 32)).state_dict()


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_resnet_weights_round_trip_from_a_file(tmp_path: Path, fmt: str) -> None:
    state = _tiny_resnet_checkpoint()
    path = tmp_path / f"weights.{fmt}"
    if fmt == "safetensors":
        save_file(state, str(path))
    else:  # a training checkpoint: nested and DataParallel-prefixed
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    model = build_model("vanilla", "tiny", {"depth": 1}, pretrained=path)
    loaded = model.backbone.body.state_dict()  # type: ignore[union-attr]
    assert loaded.keys() <= state.keys()
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key])


def test_vit_weights_round_trip_from_a_file(tmp_path: Path) -> None:
    torch.manual_seed(2)
    spec = BACKBONES["tiny_vit"]
    state = timm.create_model(spec.timm_name, **spec.timm_kwargs).state_dict()
    save_file(state, str(tmp_path / "vit.safetensors"))
    model = build_model("invpt", "tiny_vit", {"depth": 1}, pretrained=tmp_path / "vit.safetensors")
    vit = model.backbone.model  # type: ignore[union-attr]
    for key in ("pos_embed", "cls_token", "blocks.2.mlp.fc2.weight", "norm.weight", "patch_embed.proj.weight"):
        torch.testing.assert_close(vit.state_dict()[key], state[key])


def test_missing_or_mismatched_weights_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(
        MissingWeightsError, match=r"does not exist; .*timm.create_model\('resnet50', pretrained=True\)"
    ):
        build_backbone("resnet50", pretrained=tmp_path / "nope.pth")
    save_file({"fc.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match=r"lack \d+ tensor\(s\)"):
        build_backbone("tiny", pretrained=tmp_path / "other.safetensors")
    save_file(timm.create_model("resnet18", channels=(8, 16, 24, 48)).state_dict(), str(tmp_path / "wide.safetensors"))
    with pytest.raises(ValueError, match="do not fit"):
        build_backbone("tiny", pretrained=tmp_path / "wide.safetensors")


def test_timm_cache_is_used_and_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    assert cached_timm_weights("resnet18") is None
    with pytest.raises(MissingWeightsError, match="not in the local cache"):
        build_backbone("resnet18", pretrained="timm")
    url = timm.models.get_pretrained_cfg("resnet18").url
    cached = tmp_path / "torch" / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True)
    state = _tiny_resnet_checkpoint()
    torch.save(state, cached)
    assert cached_timm_weights("resnet18") == cached
    backbone = build_backbone("tiny", pretrained="timm")  # the tiny backbone is a timm resnet18
    torch.testing.assert_close(backbone.body.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])  # type: ignore[union-attr]
