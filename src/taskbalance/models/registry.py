"""``build_model``: architecture × backbone × tasks → a :class:`MultiTaskModel`, and the names it accepts.

Each architecture is registered explicitly with :func:`register_architecture` (see :mod:`taskbalance.registration`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskbalance.models.architectures import InvPTModel, MTANModel, MTINetModel, VanillaModel
from taskbalance.models.backbones import BACKBONES, Family, backbone_spec, build_backbone
from taskbalance.models.base import ModelError, MultiTaskModel
from taskbalance.registration import Registry


@dataclass(frozen=True)
class ArchitectureSpec:
    """An architecture name: its class, the backbone families it takes and how it builds them.

    ``tiny_options`` are the decoder defaults used with the tiny backbones (CPU tests and the quick study).
    """

    name: str
    cls: type[MultiTaskModel]
    families: tuple[Family, ...]
    default_backbone: str
    description: str
    backbone_options: Mapping[str, Any] = field(default_factory=dict)
    tiny_options: Mapping[str, Any] = field(default_factory=dict)


#: Architecture name → its spec (an unknown name: :class:`ModelError` listing the names).
ARCHITECTURES: Registry[ArchitectureSpec] = Registry("architecture", ModelError)


def register_architecture(spec: ArchitectureSpec) -> ArchitectureSpec:
    """Make ``spec`` available under ``spec.name`` (a duplicate name is an error)."""
    return ARCHITECTURES.add(spec.name, spec)


register_architecture(
    ArchitectureSpec("vanilla", VanillaModel, ("resnet", "hrnet", "vit"), "resnet18",
                     "shared backbone + one decoder per task (hard parameter sharing)",
                     tiny_options={"head_channels": 16, "aspp_rates": (2, 4, 6)}))
register_architecture(
    ArchitectureSpec("mtan", MTANModel, ("resnet",), "resnet18",
                     "task attention modules on the shared ResNet stages (Liu et al., CVPR 2019)",
                     tiny_options={"head_channels": 16, "aspp_rates": (2, 4, 6)}))
register_architecture(
    ArchitectureSpec("mtinet", MTINetModel, ("resnet", "hrnet"), "hrnet18",
                     "multi-scale task interactions: deep supervision, FPM, distillation (Vandenhende et al., "
                     "ECCV 2020)",
                     backbone_options={"multi_scale": True}))
register_architecture(
    ArchitectureSpec("invpt", InvPTModel, ("vit",), "vit_t",
                     "ViT + inverted-pyramid multi-task transformer decoder (Ye & Xu, ECCV 2022)",
                     backbone_options={"num_levels": 4, "drop_path_rate": 0.15},
                     tiny_options={"embed_dim": 32, "pred_channels": 8}))


def available_architectures() -> list[str]:
    """Names accepted by ``build_model(arch=...)``."""
    return list(ARCHITECTURES)


def architecture_spec(name: str) -> ArchitectureSpec:
    """The spec of an architecture name; an unknown name raises :class:`ModelError` listing the valid ones."""
    return ARCHITECTURES.lookup(name)


def compatible_backbones(arch: str) -> list[str]:
    """Backbone names ``arch`` can be built on."""
    families = architecture_spec(arch).families
    return [name for name, spec in BACKBONES.items() if spec.family in families]


def _decoder_options(spec: ArchitectureSpec) -> set[str]:
    params = inspect.signature(spec.cls.__init__).parameters
    return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "single_task"}


def build_model(
    arch: str = "vanilla",
    backbone: str | None = None,
    task_channels: Mapping[str, int] | None = None,
    pretrained: str | Path | None = None,
    single_task: bool = False,
    **options: Any,
) -> MultiTaskModel:
    """Build an architecture on a backbone for the given tasks (paper Sec. V-C).

    Args:
        arch: one of :func:`available_architectures`.
        backbone: one of :func:`compatible_backbones` (default: the architecture's reference backbone).
        task_channels: task name → output channels, e.g. ``{"semseg": 40, "depth": 1}``.
        pretrained: backbone weights: None (random), ``"timm"`` (timm's cache) or a file; never downloaded.
        single_task: build the single-task twin of ``arch`` (exactly one task; MTI-Net then self-distils).
        options: decoder options of the architecture class (e.g. ``head_channels``, ``embed_dim``) and
            ``drop_path_rate`` of the backbone. Tiny backbones get small decoder defaults.
    """
    spec = architecture_spec(arch)
    backbone = backbone or spec.default_backbone
    bb_spec = backbone_spec(backbone)
    if bb_spec.family not in spec.families:
        raise ModelError(
            f"{arch} cannot use backbone {backbone!r}; compatible backbones: {', '.join(compatible_backbones(arch))}"
        )
    if not task_channels:
        raise ModelError("task_channels must name at least one task, e.g. {'semseg': 40, 'depth': 1}")
    bad = {t: c for t, c in task_channels.items() if not isinstance(c, int) or c < 1}
    if bad:
        raise ModelError(f"output channels must be positive integers, got {bad}")
    if single_task and len(task_channels) != 1:
        raise ModelError(
            f"single_task=True builds one model per task; got {len(task_channels)} tasks: {list(task_channels)}"
        )
    backbone_options = dict(spec.backbone_options)
    if "drop_path_rate" in options:
        backbone_options["drop_path_rate"] = options.pop("drop_path_rate")
    valid = _decoder_options(spec)
    unknown = set(options) - valid
    if unknown:
        raise ModelError(f"unknown option(s) {sorted(unknown)} for {arch}; valid: {sorted(valid | {'drop_path_rate'})}")
    decoder_options = {**(spec.tiny_options if bb_spec.tiny else {}), **options}
    built = build_backbone(backbone, pretrained=pretrained, **backbone_options)
    # Architectures take (backbone, task_channels, *, single_task, **decoder options), which the base class does not.
    architecture: Callable[..., MultiTaskModel] = spec.cls
    return architecture(built, dict(task_channels), single_task=single_task, **decoder_options)


def build_single_task_models(
    arch: str,
    backbone: str | None,
    task_channels: Mapping[str, int],
    pretrained: str | Path | None = None,
    **options: Any,
) -> dict[str, MultiTaskModel]:
    """Single-task learning: one full single-task twin of ``arch`` per task, built with the same recipe."""
    return {t: build_model(arch, backbone, {t: c}, pretrained=pretrained, single_task=True, **options)
            for t, c in task_channels.items()}
