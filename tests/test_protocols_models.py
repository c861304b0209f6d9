"""The benchmarks' networks: output shapes, parameter partitions, sizes, gradient isolation, input errors."""

import pytest
import torch

from taskbalance.models import ModelError
from taskbalance.protocols.models import CelebACNN, MultiLeNet, SegNet, SegNetMTAN

SMALL = (4, 8, 8, 16, 16)


def _partition_ok(model):
    shared = {id(p) for p in model.shared_parameters()}
    per_task = [{id(p) for p in model.task_parameters(t)} for t in model.tasks]
    everything = {id(p) for p in model.parameters()}
    union = shared.union(*per_task)
    assert union == everything
    assert sum(len(s) for s in per_task) + len(shared) == len(everything)  # disjoint


@pytest.mark.parametrize("cls", [SegNet, SegNetMTAN])
def test_segnets_predict_every_task_at_input_resolution(cls):
    model = cls({"semseg": 7, "depth": 1, "normals": 3}, filters=SMALL)
    out = model.forward_train(torch.rand(2, 3, 32, 64))
    assert {t: tuple(p.shape) for t, p in out.predictions.items()} == {
        "semseg": (2, 7, 32, 64), "depth": (2, 1, 32, 64), "normals": (2, 3, 32, 64)}
    assert out.features
    _partition_ok(model)


def test_segnet_mtan_shares_the_attention_blocks_not_the_masks():
    model = SegNetMTAN({"semseg": 7, "depth": 1}, filters=SMALL)
    shared = {id(p) for p in model.shared_parameters()}
    assert all(id(p) in shared for p in model.shared["encoder_block_att"].parameters())
    assert not any(id(p) in shared for p in model.task_specific["depth"]["encoder_att"].parameters())
    # 5 encoder + 5 decoder masks per task, each a 1×1 conv-BN-ReLU-1×1 conv-BN-sigmoid
    assert len(model.task_specific["semseg"]["decoder_att"]) == 5


@pytest.mark.parametrize("cls", [SegNet, SegNetMTAN])
def test_a_task_loss_leaves_other_heads_without_gradient(cls):
    model = cls({"semseg": 3, "depth": 1}, filters=SMALL)
    model.forward_train(torch.rand(1, 3, 32, 32)).predictions["depth"].sum().backward()
    assert all(p.grad is None for p in model.task_parameters("semseg"))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_parameters())


def test_segnet_head_and_trunk_sizes_match_the_mtan_repository():
    model = SegNet({"semseg": 13, "depth": 1, "normals": 3}, filters=(64, 8, 8, 16, 16))
    head = sum(p.numel() for p in model.task_parameters("semseg"))
    assert head == (64 * 64 * 9 + 64) + (64 * 13 + 13)  # conv3×3 64→64, conv1×1 64→13
    first = model.shared["trunk"].encoder_block[0]
    assert isinstance(first[0], torch.nn.Conv2d) and (first[0].in_channels, first[0].out_channels) == (3, 64)


def test_segnet_refuses_sizes_it_cannot_unpool():
    model = SegNet({"depth": 1}, filters=SMALL)
    with pytest.raises(ModelError, match="divisible by 32"):
        model(torch.rand(1, 3, 40, 32))
    with pytest.raises(ModelError, match="B×3×H×W"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ModelError, match="no timm backbone"):
        _ = model.backbone


def test_celeba_cnn_outputs_one_logit_per_attribute():
    model = CelebACNN({"Smiling": 1, "Young": 1}, widths=(4, 8, 8, 16))
    out = model.forward_train(torch.rand(3, 3, 64, 64))
    assert {t: tuple(p.shape) for t, p in out.predictions.items()} == {"Smiling": (3, 1), "Young": (3, 1)}
    assert isinstance(model.last_shared_layer(), torch.nn.Linear)
    assert sum(p.numel() for p in model.task_parameters("Young")) == 16 + 1
    convs = [m for m in model.shared["encoder"] if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.shared["encoder"] if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 7 and len(linears) == 2  # FAMO's "9-layer" CNN
    _partition_ok(model)


def test_multilenet_sizes_are_the_mgda_ones():
    model = MultiLeNet({"left": 10, "right": 10})
    assert sum(p.numel() for p in model.shared_parameters()) == (10 * 25 + 10) + (20 * 10 * 25 + 20) + (320 * 50 + 50)
    assert sum(p.numel() for p in model.task_parameters("left")) == (50 * 50 + 50) + (50 * 10 + 10)
    assert model(torch.rand(4, 1, 28, 28))["right"].shape == (4, 10)
    with pytest.raises(ModelError, match="28×28"):
        model(torch.rand(1, 1, 32, 32))
    _partition_ok(model)


def test_single_task_models_take_one_task():
    with pytest.raises(ModelError, match="one model per task"):
        MultiLeNet({"left": 10, "right": 10}, single_task=True)


def test_segnet_mtan_with_per_task_attention_blocks_is_cut_at_the_taps():
    from taskbalance.balancers import create

    model = SegNetMTAN({"semseg": 3, "depth": 1}, filters=SMALL, shared_attention_blocks=False)
    _partition_ok(model)
    assert "encoder_block_att" in model.task_specific["depth"] and "encoder_block_att" not in model.shared
    out = model.forward_train(torch.rand(2, 3, 32, 32))
    losses = {"semseg": out.predictions["semseg"].mean(), "depth": out.predictions["depth"].mean()}
    balancer = create(
        "mgda-ub", tasks=("semseg", "depth"), shared=model.shared_parameters(), last_layer=model.last_shared_layer()
    )
    balancer.backward(losses, features=out.features)  # raises when a loss bypasses the taps
    assert all(p.grad is not None for p in model.shared["trunk"].encoder_block[0].parameters())
