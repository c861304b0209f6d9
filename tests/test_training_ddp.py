"""Data-parallel exactness on CPU with two Gloo processes: a 2-process step equals the 1-process step on the same
global batch (parameters, logged weights and losses), for uniform under DDP and for MGDA / PCGrad with the
``params`` source; the reducer's global quantities; masked-mean losses with unequal ignore counts."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn

import processes
from taskbalance.balancers import StepResult, create
from taskbalance.tasks import build_task
from taskbalance.tasks.losses import shared_normaliser
from taskbalance.training.config import ConfigError
from taskbalance.training.ddp import DataParallel, convert_batchnorm, uses_ddp, wants_sync_batchnorm
from taskbalance.training.distributed import DistInfo, ProcessGroupReducer, broadcast_state
from taskbalance.training.evaluate import task_losses

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the Gloo backend is not available")

WORLD = 2
TASKS = ("semseg", "depth")
STEPS = 3


def _spawn(worker: Any, tmp_path: Path, *args: Any) -> None:
    processes.spawn(worker, (str(tmp_path / "store"), *args), nprocs=WORLD, timeout=300)


def _join(rank: int, store: str) -> DistInfo:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    return DistInfo(rank=rank, world_size=WORLD)


def _leave() -> None:
    """Tear the group down together: a process that destroys its Gloo group and exits while its peer still works
    (rank 0 trains the 1-process reference after the 2-process run) can abort the peer ("terminate called without
    an active exception", seen as a SIGABRT under load)."""
    dist.barrier()
    dist.destroy_process_group()


def _global_batch() -> dict[str, Tensor]:
    """Four images whose two halves have very different numbers of ignored pixels (rank 1's half: most)."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(4, 3, 24, 32, generator=generator)
    semseg = torch.randint(0, 5, (4, 24, 32), generator=generator)
    depth = torch.rand(4, 1, 24, 32, generator=generator) + 0.5
    semseg[2:, :20] = 255  # rank 1: 20 of 24 rows unlabelled
    semseg[0, :2] = 255
    depth[3, :, :, 5:] = 0.0  # invalid depth
    return {"image": images, "semseg": semseg, "depth": depth}


def _shard(batch: dict[str, Tensor], rank: int) -> dict[str, Tensor]:
    half = batch["image"].shape[0] // WORLD
    return {k: v[rank * half : (rank + 1) * half] for k, v in batch.items()}


def _specs() -> dict[str, Any]:
    return {"semseg": build_task("semseg", num_classes=5), "depth": build_task("depth")}


@functools.cache
def _initial_model() -> nn.Module:
    from taskbalance.models import build_model

    torch.manual_seed(0)
    model = build_model(arch="vanilla", backbone="tiny", task_channels={"semseg": 5, "depth": 1}, pretrained=None,
                        single_task=False)
    for module in model.modules():  # frozen BatchNorm (running statistics) and no dropout: per-image outputs
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            module.eval()
    return model


def _tiny_model() -> nn.Module:
    """A fresh copy of the same initial model (building one takes seconds)."""
    return copy.deepcopy(_initial_model())


def _train(
    method: str, source: str | None, diagnose: str | None, info: DistInfo | None
) -> tuple[Tensor, list[StepResult]]:
    """STEPS SGD steps on the global batch (its shard when ``info`` is given), the middle one measuring per-task
    gradients on ``diagnose``; the flat parameters and each step's result."""
    model = _tiny_model()
    specs = _specs()
    balancer = create(method, tasks=TASKS, shared=model.shared_parameters(), last_layer=model.last_shared_layer(),
                      source=source)
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.parameters()], lr=0.05)
    batch = _global_batch()
    data_parallel = None
    if info is not None:
        broadcast_state(model, info)
        data_parallel = DataParallel(model, balancer, info, replicated=list(balancer.parameters()))
        batch = _shard(batch, info.rank)
    results = []
    for step in range(STEPS):
        measure = diagnose if step == STEPS // 2 else None
        optimizer.zero_grad(set_to_none=True)
        if data_parallel is None:
            output = model.forward_train(batch["image"])
            step_losses = task_losses(specs, output, batch)
            result = balancer.backward(step_losses, features=output.features, diagnose=measure)
        else:
            output = data_parallel.forward_train(batch["image"], diagnose=measure is not None)
            with data_parallel.losses_context():
                step_losses = task_losses(specs, output, batch)
            result = balancer.backward(step_losses, features=output.features, diagnose=measure,
                                       reducer=data_parallel.reducer)
            data_parallel.gradient_hook()
        optimizer.step()
        results.append(result)
    return _flat(model), results


def _flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _exactness_worker(rank: int, store: str, method: str, source: str | None, diagnose: str | None) -> None:
    info = _join(rank, store)
    try:
        params, results = _train(method, source, diagnose, info)
        gathered = [torch.empty_like(params) for _ in range(WORLD)]
        dist.all_gather(gathered, params)
        assert torch.equal(gathered[0], gathered[1]), "the processes' parameters differ"
        if rank == 0:
            reference, expected = _train(method, source, diagnose, None)
            update = float((reference - _flat(_tiny_model())).norm())
            difference = float((params - reference).norm())
            print(f"{method}: |Δθ| {update:.3e}, 2-process vs 1-process {difference:.3e}")
            assert difference <= 1e-5 * float(reference.norm()), f"{method}: parameters differ by {difference:.2e}"
            assert difference <= 1e-3 * update, f"{method}: the difference is not small against the update {update:.2e}"
            gramians = 0
            for got, want in zip(results, expected):  # logged weights, losses and diagnostics: the global step's
                assert got.weights == pytest.approx(want.weights, rel=1e-5, abs=1e-7)
                assert got.losses == pytest.approx(want.losses, rel=1e-5)
                assert (got.gramian is None) == (want.gramian is None)
                if want.gramian is not None:
                    gramians += 1
                    assert torch.allclose(
                        got.gramian, want.gramian, rtol=1e-4, atol=1e-10 * float(want.gramian.abs().max())
                    )
            assert gramians > 0
    finally:
        _leave()


@pytest.mark.parametrize(("method", "source", "diagnose"), [
    ("uniform", None, "params"),  # DDP, and a diagnostics step under no_sync
    ("mgda", "params", None), ("pcgrad", "params", None), ("mgda", "features", None),
    ("gradnorm", "last_layer", None),  # weights learned from the global last-layer Gramian
])
def test_two_processes_equal_one_process_on_the_global_batch(tmp_path: Path, method: str, source: str | None,
                                                             diagnose: str | None):
    _spawn(_exactness_worker, tmp_path, method, source, diagnose)


def _reducer_worker(rank: int, store: str) -> None:
    info = _join(rank, store)
    try:
        reducer = ProcessGroupReducer(info)
        local = torch.tensor([[1.0, 2.0 + rank], [3.0 * rank, 4.0]])
        # the mean over processes is the global quantity for losses and parameter Jacobians
        assert torch.equal(reducer.sum_losses(local[0]), torch.tensor([1.0, 2.5]))
        assert torch.equal(reducer.sum_jacobian(local), torch.tensor([[1.0, 2.5], [1.5, 4.0]]))
        # features: the global feature gradient is the concatenation of the ∇_{z_r} L_r / W, so G = Σ_r G_r / W²
        rows = torch.tensor([[1.0, 0.0], [2.0, 1.0]]) * (rank + 1)
        whole = (
            torch.cat([torch.tensor([[1.0, 0.0], [2.0, 1.0]]), torch.tensor([[1.0, 0.0], [2.0, 1.0]]) * 2], dim=1)
            / WORLD
        )
        assert torch.allclose(reducer.sum_gramian(rows @ rows.T), whole @ whole.T)
        assert reducer.bytes_reduced == 2 * 4 + 4 * 4 + 4 * 4
    finally:
        _leave()


def test_reducer_gives_the_global_quantities(tmp_path: Path):
    _spawn(_reducer_worker, tmp_path)


def _masked_mean_worker(rank: int, store: str) -> None:
    info = _join(rank, store)
    try:
        reducer = ProcessGroupReducer(info)
        generator = torch.Generator().manual_seed(5)
        cases = {
            "semseg": (build_task("semseg", num_classes=3), torch.randn(4, 3, 6, 5, generator=generator),
                       torch.randint(0, 3, (4, 6, 5), generator=generator)),
            "depth": (build_task("depth"), torch.randn(4, 1, 6, 5, generator=generator),
                      torch.rand(4, 1, 6, 5, generator=generator) + 0.1),
            "normals": (build_task("normals"), torch.randn(4, 3, 6, 5, generator=generator),
                        nn.functional.normalize(torch.randn(4, 3, 6, 5, generator=generator), dim=1)),
            "sal": (build_task("sal"), torch.randn(4, 1, 6, 5, generator=generator),
                    (torch.rand(4, 1, 6, 5, generator=generator) > 0.7).float()),
        }
        cases["semseg"][2][2:, 1:] = 255  # rank 1's shard: mostly ignored
        cases["depth"][2][:2, :, 2:] = 0.0  # rank 0's shard: mostly invalid depth
        cases["normals"][2][3, :, :4] = 0.0
        cases["sal"][2][2:, :, :3] = 255.0
        for name, (spec, pred, target) in cases.items():
            whole = pred.clone().requires_grad_(True)
            single = spec.loss(whole, target)
            single.backward()
            part = pred[2 * rank : 2 * rank + 2].clone().requires_grad_(True)
            with shared_normaliser(reducer.mean_count):
                local = spec.loss(part, target[2 * rank : 2 * rank + 2])
            local.backward()
            mean = reducer.sum_losses(local.detach().reshape(1))
            assert float(mean) == pytest.approx(float(single), rel=1e-6), name
            # DDP averages the gradients: the mean of the local gradients is the global one on this shard
            assert torch.allclose(part.grad / WORLD, whole.grad[2 * rank : 2 * rank + 2], rtol=1e-5, atol=1e-8), name
            plain = spec.loss(pred[2 * rank : 2 * rank + 2], target[2 * rank : 2 * rank + 2])
            if name in ("semseg", "depth"):  # the per-process masked means would have been wrong
                assert abs(float(reducer.sum_losses(plain.reshape(1))) - float(single)) > 1e-3 * abs(float(single)), (
                    name
                )
    finally:
        _leave()


def test_masked_means_with_unequal_ignore_counts_equal_the_single_process_loss(tmp_path: Path):
    _spawn(_masked_mean_worker, tmp_path)


def test_only_methods_that_weigh_losses_take_the_ddp_path():
    model = nn.Linear(2, 2)
    expected = {("uniform", None): True, ("uw", None): True, ("famo", None): True, ("avgnorm", "last_layer"): False,
                ("gradnorm", "last_layer"): False, ("mgda", "params"): False, ("pcgrad", "features"): False}
    for (method, source), ddp in expected.items():
        assert uses_ddp(create(method, tasks=TASKS, shared=model, source=source)) is ddp, method


def test_sync_batchnorm_is_the_default_on_gpus_only_and_refused_on_the_cpu():
    two, one = DistInfo(rank=0, world_size=2), DistInfo()
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert wants_sync_batchnorm("auto", two, gpu) and wants_sync_batchnorm(True, two, gpu)
    assert not wants_sync_batchnorm("auto", two, cpu) and not wants_sync_batchnorm(False, two, gpu)
    assert not wants_sync_batchnorm("auto", one, gpu) and not wants_sync_batchnorm(True, one, cpu)
    with pytest.raises(ConfigError, match="needs GPUs"):
        wants_sync_batchnorm(True, two, cpu)
    model = convert_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)), sync=True)
    assert isinstance(model[1], nn.SyncBatchNorm)
