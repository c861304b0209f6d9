"""Architectures: output shapes, the shared/task partition, gradient flow, the feature cut, single-task twins."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor

from taskbalance.models import ModelError, ModelOutput, MultiTaskModel, build_model, build_single_task_models
from taskbalance.models.backbones import BACKBONES

TASKS = {"semseg": 5, "depth": 1, "normals": 3}
TINY = [("vanilla", "tiny"), ("vanilla", "tiny_vit"), ("mtan", "tiny"), ("mtinet", "tiny"), ("invpt", "tiny_vit")]


def _build(arch: str, backbone: str, tasks: dict[str, int] = TASKS, **options: object) -> MultiTaskModel:
    torch.manual_seed(0)
    return build_model(arch, backbone, tasks, **options)


def _task_loss(out: ModelOutput, task: str) -> Tensor:
    """A loss touching every output element of the task, deep supervision included."""
    outputs = [out.predictions[task], *out.auxiliary.get(task, [])]
    return sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outputs)  # type: ignore[return-value]


@pytest.mark.parametrize(("arch", "backbone"), TINY)
def test_predictions_and_deep_supervision_are_at_input_resolution(arch: str, backbone: str) -> None:
    model = _build(arch, backbone)
    out = model.forward_train(torch.randn(2, 3, 64, 96))
    assert {t: tuple(p.shape) for t, p in out.predictions.items()} == {t: (2, c, 64, 96) for t, c in TASKS.items()}
    for task, aux in out.auxiliary.items():
        assert aux and all(tuple(a.shape) == (2, TASKS[task], 64, 96) for a in aux)
    assert bool(out.auxiliary) == (arch in ("mtinet", "invpt"))
    assert out.features and all(f.requires_grad for f in out.features)
    assert set(model(torch.randn(2, 3, 64, 96))) == set(TASKS)


@pytest.mark.parametrize(
    ("arch", "backbone", "size"),
    [
        ("vanilla", "tiny_vit", (61, 45)),
        ("mtinet", "tiny", (50, 70)),
        ("invpt", "tiny_vit", (70, 33)),
        ("mtan", "tiny", (37, 41)),
    ],
)
def test_inputs_off_the_size_multiple_are_padded_and_cropped(arch: str, backbone: str, size: tuple[int, int]) -> None:
    model = _build(arch, backbone).eval()
    image = torch.randn(1, 3, *size)
    out = model.forward_train(image)
    assert all(p.shape[-2:] == size for p in out.predictions.values())
    assert all(a.shape[-2:] == size for aux in out.auxiliary.values() for a in aux)
    padded = torch.nn.functional.pad(image, (0, -size[1] % model.size_divisor, 0, -size[0] % model.size_divisor))
    with torch.no_grad():
        reference = model(padded)["depth"][..., : size[0], : size[1]]
    torch.testing.assert_close(out.predictions["depth"].detach(), reference)


@pytest.mark.parametrize(
    ("arch", "backbone", "options"), [*[(a, b, {}) for a, b in TINY], ("mtan", "tiny", {"shared_refinement": False})]
)
def test_shared_and_task_parameters_partition_all_parameters(arch: str, backbone: str, options: dict) -> None:
    model = _build(arch, backbone, **options)
    groups = [model.shared_parameters(), *(model.task_parameters(t) for t in TASKS)]
    ids = [id(p) for group in groups for p in group]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert all(groups)
    last = model.last_shared_layer()
    assert any(last is m for m in model.backbone.modules())
    assert {id(p) for p in last.parameters()} <= {id(p) for p in model.shared_parameters()}


@pytest.mark.parametrize(("arch", "backbone"), TINY)
def test_gradients_reach_every_parameter(arch: str, backbone: str) -> None:
    model = _build(arch, backbone)
    out = model.forward_train(torch.randn(2, 3, 64, 64))
    sum(_task_loss(out, t) for t in TASKS).backward()  # type: ignore[union-attr]
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize(("arch", "backbone"), TINY)
def test_last_shared_layer_gets_gradient_at_initialisation(arch: str, backbone: str) -> None:
    """GradNorm / AvgNorm divide by its gradient norm (timm's zero-initialised last BN would make it 0)."""
    model = _build(arch, backbone)
    _task_loss(model.forward_train(torch.randn(2, 3, 64, 64)), "depth").backward()
    weight = model.last_shared_layer().weight
    assert weight.grad is not None and weight.grad.norm() > 0


@pytest.mark.parametrize(("arch", "backbone", "options"), [
    ("vanilla", "tiny", {}), ("vanilla", "tiny_vit", {}), ("mtan", "tiny", {"shared_refinement": False}),
    ("mtinet", "tiny", {}), ("invpt", "tiny_vit", {}),
])
def test_features_are_a_cut_between_shared_and_task_parameters(arch: str, backbone: str, options: dict) -> None:
    """Back-propagating ∂L_t/∂features into the shared parameters gives ∂L_t/∂shared; no other task's own parameter
    moves."""
    model = _build(arch, backbone, **options)
    out = model.forward_train(torch.randn(2, 3, 64, 64))
    shared = model.shared_parameters()
    for task in TASKS:
        loss = _task_loss(out, task)
        direct = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        on_features = torch.autograd.grad(loss, out.features, retain_graph=True, allow_unused=True)
        pairs = [(f, g) for f, g in zip(out.features, on_features) if g is not None]
        through = torch.autograd.grad(
            [f for f, _ in pairs], shared, [g for _, g in pairs], retain_graph=True, allow_unused=True
        )
        for d, t in zip(direct, through):
            assert (d is None) == (t is None)
            if d is not None:
                torch.testing.assert_close(t, d, rtol=1e-4, atol=1e-6)
        for other in TASKS:
            if other != task:
                grads = torch.autograd.grad(loss, model.task_parameters(other), retain_graph=True, allow_unused=True)
                assert all(g is None or not g.any() for g in grads)


@pytest.mark.parametrize("shared_refinement", [True, False])
def test_mtan_refinement_blocks_are_shared_as_in_mtan_or_per_task(shared_refinement: bool) -> None:
    model = _build("mtan", "tiny", shared_refinement=shared_refinement)
    owners = [model.shared] if shared_refinement else [model.task_specific[t] for t in TASKS]
    assert all("refinement" in owner for owner in owners)
    assert all("refinement" not in model.task_specific[t] for t in TASKS) == shared_refinement


@pytest.mark.parametrize(("arch", "backbone"), TINY)
def test_single_task_twins(arch: str, backbone: str) -> None:
    twins = build_single_task_models(arch, backbone, {"depth": 1, "semseg": 5})
    assert set(twins) == {"depth", "semseg"}
    out = twins["depth"].forward_train(torch.randn(2, 3, 64, 64))
    assert list(out.predictions) == ["depth"] and out.predictions["depth"].shape == (2, 1, 64, 64)
    assert twins["depth"].single_task


def test_mtinet_twin_self_distils_and_multi_task_mtinet_needs_two_tasks() -> None:
    twin = _build("mtinet", "tiny", {"depth": 1}, single_task=True)
    assert [list(d) for d in twin.task_specific["depth"]["distill"]] == [["depth"]] * 4
    multi = _build("mtinet", "tiny", {"depth": 1, "semseg": 5})
    assert [list(d) for d in multi.task_specific["depth"]["distill"]] == [["semseg"]] * 4
    with pytest.raises(ModelError, match="single_task=True"):
        _build("mtinet", "tiny", {"depth": 1})
    with pytest.raises(ModelError, match="2 tasks"):
        _build("vanilla", "tiny", {"depth": 1, "semseg": 5}, single_task=True)


@pytest.mark.parametrize(("arch", "backbone", "options", "size"), [
    ("vanilla", "resnet18", {}, (40, 56)),
    ("mtan", "resnet18", {}, (32, 32)),
    ("vanilla", "hrnet18", {}, (40, 40)),
    ("mtinet", "hrnet18", {}, (64, 64)),
    ("vanilla", "vit_t", {}, (40, 24)),
    ("invpt", "vit_t", {"embed_dim": 64, "pred_channels": 16}, (64, 64)),
])
def test_standard_backbones_on_small_inputs(arch: str, backbone: str, options: dict, size: tuple[int, int]) -> None:
    model = _build(arch, backbone, {"semseg": 3, "depth": 1}, **options)
    with torch.no_grad():
        predictions = model(torch.randn(2, 3, *size))
    assert {t: tuple(p.shape) for t, p in predictions.items()} == {"semseg": (2, 3, *size), "depth": (2, 1, *size)}


#: The foundation-model timm classes of Table VIII at a CPU-test size (same timm constructors, fewer/narrower blocks).
SMALL_VFM = {
    "vit_b_dinov2": {"embed_dim": 64, "depth": 2, "num_heads": 2, "img_size": 56},  # patch 14, 4 register tokens
    "vit_b_sam": {"embed_dim": 64, "depth": 2, "num_heads": 2, "img_size": 64, "window_size": 2,
                  "global_attn_indexes": (1,), "neck_chans": 32},  # windowed attention, relative positions, conv neck
    "vit_b_clip": {"embed_dim": 64, "depth": 2, "num_heads": 2, "img_size": 64},  # pre-norm, quick-GELU
}


@pytest.mark.parametrize(
    ("backbone", "size"), [("vit_b_dinov2", (30, 30)), ("vit_b_sam", (32, 48)), ("vit_b_clip", (40, 24))]
)
def test_foundation_model_backbones_run_and_pad_to_their_patch(
    backbone: str, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = BACKBONES[backbone]
    monkeypatch.setitem(BACKBONES, backbone, dataclasses.replace(spec, timm_kwargs=SMALL_VFM[backbone]))
    model = _build("vanilla", backbone, {"depth": 1}, head_channels=8)
    assert model.size_divisor == (14 if "dinov2" in backbone else 16)
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size))["depth"].shape == (1, 1, *size)
    out = model.forward_train(torch.randn(2, 3, *size))
    out.predictions["depth"].sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_bad_names_and_options_list_the_valid_ones() -> None:
    with pytest.raises(
        ModelError, match="unknown architecture 'cross-stitch'; available: vanilla, mtan, mtinet, invpt"
    ):
        build_model("cross-stitch", "tiny", TASKS)
    with pytest.raises(ModelError, match="unknown backbone 'resnet101'; available: tiny, resnet18"):
        build_model("vanilla", "resnet101", TASKS)
    with pytest.raises(ModelError, match="compatible backbones: tiny, resnet18, resnet50$"):
        build_model("mtan", "tiny_vit", TASKS)
    with pytest.raises(ModelError, match="compatible backbones: tiny_vit, vit_t"):
        build_model("invpt", "hrnet18", TASKS)
    with pytest.raises(ModelError, match=r"unknown option\(s\) \['heads'\] for vanilla; valid: \['aspp_rates'"):
        build_model("vanilla", "tiny", TASKS, heads=3)
    with pytest.raises(ModelError, match="positive integers"):
        build_model("vanilla", "tiny", {"semseg": 0})
    with pytest.raises(ModelError, match="at least one task"):
        build_model("vanilla", "tiny", {})


def test_bad_inputs_get_clear_errors() -> None:
    model = _build("vanilla", "tiny")
    with pytest.raises(ModelError, match=r"B×3×H×W, got \(3, 64, 64\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ModelError, match="unknown task 'edge'"):
        model.task_parameters("edge")
