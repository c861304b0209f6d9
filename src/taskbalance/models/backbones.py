"""Backbones from timm, behind one interface: images → a list of NCHW feature maps (finest first).

Names (``available_backbones()``) map to timm models, never to hand-written networks:

* ``resnet18``/``resnet50``: ResNet (He et al., CVPR 2016). Dense mode removes the stride of the last two stages
  and dilates them (timm ``output_stride=8``), as MTLP's ``models/resnet_dilated.py`` does; multi-scale mode keeps
  output stride 32 and returns the four stages (strides 4–32).
* ``hrnet18``: timm ``hrnet_w18_small_v2``, the HRNet-18 of MTI-Net (MTLP ``models/model_info/hrnet_w18.yml``); its
  four branches give 18/36/72/144 channels at strides 4–32.
* ``vit_t``/``vit_s``/``vit_b`` and the vision-foundation-model initialisations of the paper's Table VIII
  (``vit_b_in1k``, ``vit_b_in21k``, ``vit_b_in22k``, ``vit_b_clip``, ``vit_b_sam``, ``vit_b_dino``, ``vit_b_dinov2``):
  tokens after chosen blocks through timm ``forward_intermediates``, reshaped to maps at stride = patch size.
* ``tiny`` and ``tiny_vit``: small timm ResNet / ViT configurations for CPU tests and the quick study.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import timm
from torch import Tensor, nn

from taskbalance.models.errors import ModelError
from taskbalance.models.pretrained import load_weights, resolve_weights
from taskbalance.registration import Registry

Family = Literal["resnet", "hrnet", "vit"]


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone name: the timm model behind it, its family and the timm constructor overrides."""

    name: str
    timm_name: str
    family: Family
    description: str
    timm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    tiny: bool = False


_SPECS: tuple[BackboneSpec, ...] = (
    BackboneSpec("tiny", "resnet18", "resnet",
                 "ResNet with 2 basic blocks of 8/16/24/32 channels per stage (CPU tests)",
                 {"channels": (8, 16, 24, 32)}, tiny=True),
    BackboneSpec("resnet18", "resnet18", "resnet", "ResNet-18, dilated to output stride 8 (MTLP)"),
    BackboneSpec("resnet50", "resnet50", "resnet", "ResNet-50, dilated to output stride 8 (MTLP)"),
    BackboneSpec("hrnet18", "hrnet_w18_small_v2", "hrnet", "HRNet-W18-small-v2 (MTI-Net's HRNet-18)"),
    BackboneSpec("tiny_vit", "vit_tiny_patch16_224", "vit", "ViT with patch 8, width 64, depth 3, 2 heads (CPU tests)",
                 {"patch_size": 8, "embed_dim": 64, "depth": 3, "num_heads": 2, "img_size": 64}, tiny=True),
    BackboneSpec("vit_t", "vit_tiny_patch16_224", "vit", "ViT-T/16 (the paper's InvPT base model)"),
    BackboneSpec("vit_s", "vit_small_patch16_224", "vit", "ViT-S/16"),
    BackboneSpec("vit_b", "vit_base_patch16_224", "vit", "ViT-B/16"),
    BackboneSpec("vit_b_in1k", "vit_base_patch16_384.augreg_in1k", "vit", "ViT-B/16, ImageNet-1k (Table VIII)"),
    BackboneSpec("vit_b_in21k", "vit_base_patch16_224.augreg_in21k", "vit", "ViT-B/16, ImageNet-21k (Table VIII)"),
    BackboneSpec("vit_b_in22k", "vit_base_patch16_384.augreg_in21k_ft_in1k", "vit",
                 "ViT-B/16, ImageNet-21k→1k, the paper's 'ImageNet-22K' (Table VIII)"),
    BackboneSpec("vit_b_clip", "vit_base_patch16_clip_384", "vit", "ViT-B/16, CLIP (Table VIII)"),
    BackboneSpec("vit_b_sam", "samvit_base_patch16", "vit",
                 "ViT-B/16, SAM image encoder without its neck (Table VIII)"),
    BackboneSpec("vit_b_dino", "vit_base_patch16_224.dino", "vit", "ViT-B/16, DINO (Table VIII)"),
    BackboneSpec("vit_b_dinov2", "vit_base_patch14_reg4_dinov2", "vit",
                 "ViT-B/14 with 4 registers, DINOv2 (Table VIII)"),
)
#: Backbone name → its spec (an unknown name: :class:`ModelError` listing the names).
BACKBONES: Registry[BackboneSpec] = Registry("backbone", ModelError)


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Make ``spec`` available under ``spec.name`` (a duplicate name is an error)."""
    return BACKBONES.add(spec.name, spec)


for _spec in _SPECS:
    register_backbone(_spec)


def available_backbones() -> list[str]:
    """Names accepted by :func:`build_backbone` and ``build_model(backbone=...)``."""
    return list(BACKBONES)


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of a backbone name; an unknown name raises :class:`ModelError` listing the valid ones."""
    return BACKBONES.lookup(name)


def _last_weight_layer(module: nn.Module) -> nn.Module:
    last: nn.Module | None = None
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.Linear)):
            last = sub
    if last is None:
        raise ModelError(f"{type(module).__name__} has no convolution or linear layer")
    return last


class Backbone(nn.Module):
    """A timm model returning a list of NCHW feature maps, finest first.

    ``channels`` and ``reductions`` describe the returned maps; inputs must have sides that are multiples of
    ``size_divisor`` (the models pad them).
    """

    def __init__(
        self, spec: BackboneSpec, channels: Sequence[int], reductions: Sequence[int], size_divisor: int
    ) -> None:
        super().__init__()
        self.spec = spec
        self.channels: tuple[int, ...] = tuple(channels)
        self.reductions: tuple[int, ...] = tuple(reductions)
        self.size_divisor = size_divisor

    @property
    def family(self) -> Family:
        """``resnet``, ``hrnet`` or ``vit``."""
        return self.spec.family

    def last_layer(self) -> nn.Module:
        """The last convolution / linear layer of the backbone (the paper's last shared layer ``W``)."""
        return _last_weight_layer(self)


class CNNBackbone(Backbone):
    """A timm ``features_only`` ResNet or HRNet."""

    def __init__(self, spec: BackboneSpec, body: nn.Module) -> None:
        info: Any = body.feature_info  # timm's FeatureInfo of a features_only model (untyped)
        reductions = info.reduction()
        super().__init__(spec, info.channels(), reductions, size_divisor=max(reductions))
        self.body = body

    def forward(self, images: Tensor) -> list[Tensor]:
        """Feature maps of the requested stages."""
        return list(self.body(images))

    def forward_stem(self, images: Tensor) -> Tensor:
        """ResNet stem (conv, norm, activation, max-pool): the input of the first stage."""
        body = self._resnet_body()
        return body.maxpool(body.act1(body.bn1(body.conv1(images))))

    @property
    def stages(self) -> list[nn.Sequential]:
        """The four ResNet stages (``layer1``–``layer4``), for architectures that work inside them (MTAN)."""
        body = self._resnet_body()
        return [body.layer1, body.layer2, body.layer3, body.layer4]

    def _resnet_body(self) -> Any:
        if self.family != "resnet":
            raise ModelError(f"stage access needs a ResNet backbone, not {self.spec.name!r}")
        return self.body


class ViTBackbone(Backbone):
    """A timm ViT whose tokens after ``block_indices`` are returned as maps at stride = patch size.

    Blocks after the last requested index, the classifier head and (for SAM) the conv neck are removed, so every
    parameter is used. The final LayerNorm, when the model has one, is applied to every returned level.
    """

    def __init__(self, spec: BackboneSpec, model: nn.Module, block_indices: Sequence[int]) -> None:
        apply_norm = isinstance(getattr(model, "norm", None), nn.LayerNorm)
        vit: Any = model  # timm's ViT classes: attributes and methods the Module type does not declare
        vit.prune_intermediate_layers(list(block_indices), prune_norm=not apply_norm, prune_head=True)
        dim: int = vit.embed_dim
        patch: int = vit.patch_embed.patch_size[0]
        super().__init__(spec, [dim] * len(block_indices), [patch] * len(block_indices), size_divisor=patch)
        self.model = model
        self.apply_norm = apply_norm
        self.block_indices = list(block_indices)

    def forward(self, images: Tensor) -> list[Tensor]:
        """Token maps (B×D×H/p×W/p) after each requested block, prefix tokens dropped."""
        return list(self.model.forward_intermediates(  # type: ignore[operator]
            images, indices=self.block_indices, norm=self.apply_norm, intermediates_only=True
        ))


def evenly_spaced_blocks(depth: int, count: int) -> list[int]:
    """Indices of ``count`` blocks evenly spread over ``depth`` (InvPT's ViT-L/24: blocks 6, 12, 18, 24 → 5, 11, 17,
    23)."""
    return sorted({math.ceil((k + 1) * depth / count) - 1 for k in range(count)})


def build_backbone(
    name: str,
    *,
    pretrained: str | Path | None = None,
    multi_scale: bool = False,
    num_levels: int = 1,
    drop_path_rate: float = 0.0,
) -> Backbone:
    """Build a backbone by name (random initialisation unless ``pretrained``; nothing is downloaded).

    Args:
        name: one of :func:`available_backbones`.
        pretrained: None, ``"timm"`` (timm's weights from the local cache) or a weight file.
        multi_scale: CNNs only. ResNets return their four stages at output stride 32 instead of the dilated last
            stage at output stride 8; HRNet always returns its four branches.
        num_levels: ViTs only; tokens are returned after this many evenly spaced blocks, the last block included
            (fewer when the ViT has fewer blocks).
        drop_path_rate: stochastic depth of the timm model (ResNets and ViTs).
    """
    spec = backbone_spec(name)
    kwargs: dict[str, Any] = {"pretrained": False, **spec.timm_kwargs}
    if drop_path_rate:
        if spec.family == "hrnet":
            raise ModelError("timm's HRNet has no stochastic depth; drop_path_rate must be 0")
        kwargs["drop_path_rate"] = drop_path_rate
    weights = resolve_weights(spec.timm_name, pretrained)
    if spec.family == "vit":
        if multi_scale:
            raise ModelError("multi_scale applies to CNN backbones; ViTs take num_levels")
        kwargs["num_classes"] = 0
        if not spec.timm_name.startswith("samvit"):  # SAM resamples its position embedding for any size itself
            kwargs["dynamic_img_size"] = True
        model = timm.create_model(spec.timm_name, **kwargs)
        if weights is not None:
            load_weights(model, weights)
        return ViTBackbone(spec, model, evenly_spaced_blocks(len(model.blocks), num_levels))  # type: ignore[arg-type]
    if num_levels != 1:
        raise ModelError("num_levels applies to ViT backbones")
    if spec.family == "resnet":
        # zero_init_last=False: torchvision's initialisation, which MTLP uses; timm's zero-initialised last BN
        # would also leave the last shared layer without gradient at initialisation (GradNorm/AvgNorm divide by it)
        kwargs.update(out_indices=(1, 2, 3, 4) if multi_scale else (4,), output_stride=32 if multi_scale else 8,
                      zero_init_last=False)
    else:
        kwargs.update(out_indices=(1, 2, 3, 4), feature_location="")
    body = timm.create_model(spec.timm_name, features_only=True, **kwargs)
    if weights is not None:
        load_weights(body, weights)
    return CNNBackbone(spec, body)
