"""Data-parallel step time and communication, side by side in one run (see ``docs/distributed.md``).

Rows (the global batch is the same in every row; with W processes each takes ``batch / W`` images):

* ``1 process``: the whole global batch in one process (uniform, then the gradient method).
* ``DDP``: W processes, the model in ``DistributedDataParallel`` (bucketed all-reduce overlapped with the backward);
  the loss-weighting path of :class:`taskbalance.training.ddp.DataParallel`.
* ``per-parameter all-reduce``: W processes, the backward first, then one blocking all-reduce per parameter tensor
  (the trainer's scheme before DDP), as a baseline.
* ``<method> (reducer)``: W processes, the gradient path: the K×d per-task Jacobian all-reduced once by the
  balancer's reducer, the heads averaged in one flat all-reduce.

A step is ``zero_grad + forward + losses + balancer.backward + gradient reduction + optimizer step``. Rounds run one
step of every multi-process row in turn (load drift hits all rows alike); the time is the median over rounds on
rank 0. Bytes are the payload of the all-reduces per step and process (a ring all-reduce moves about
``2 (W−1)/W`` times that over each link); for DDP they are counted by a communication hook around DDP's own
all-reduce, for the reducer path by the reducer; "other" is the losses and pixel counts (a few scalars).

    .venv/bin/python benchmarks/ddp_step.py                       # 2 Gloo processes on the CPU, tiny model
    .venv/bin/python benchmarks/ddp_step.py --device cuda --backbone resnet18 --size 288x384 --batch 8
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from taskbalance.balancers import Balancer, create
from taskbalance.tasks import build_task
from taskbalance.training.ddp import DataParallel
from taskbalance.training.distributed import DistInfo
from taskbalance.training.evaluate import task_losses

TASKS = ("semseg", "depth", "normals", "edge")
CLASSES = 13


@dataclass(frozen=True)
class Setting:
    backbone: str
    size: tuple[int, int]
    batch: int
    method: str
    features_check: bool
    rounds: int
    warmup: int
    world: int
    device: str


def _model(setting: Setting) -> nn.Module:
    from taskbalance.models import build_model

    torch.manual_seed(0)
    channels = {"semseg": CLASSES, "depth": 1, "normals": 3, "edge": 1}
    return build_model(arch="vanilla", backbone=setting.backbone, task_channels=channels, pretrained=None,
                       single_task=False)


def _batch(setting: Setting, images: int, device: torch.device) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(1)
    height, width = setting.size
    batch = {
        "image": torch.randn(images, 3, height, width, generator=generator),
        "semseg": torch.randint(0, CLASSES, (images, height, width), generator=generator),
        "depth": torch.rand(images, 1, height, width, generator=generator) + 0.5,
        "normals": nn.functional.normalize(torch.randn(images, 3, height, width, generator=generator), dim=1),
        "edge": (torch.rand(images, 1, height, width, generator=generator) > 0.9).float(),
    }
    batch["semseg"][:, : height // 4] = 255  # some ignored pixels, as in real labels
    return {k: v.to(device) for k, v in batch.items()}


def _specs() -> dict[str, Any]:
    return {task: build_task(task, **({"num_classes": CLASSES} if task == "semseg" else {})) for task in TASKS}


class Row:
    """One configuration's model, balancer, optimizer and step function."""

    def __init__(self, model: nn.Module, method: str, source: str | None, info: DistInfo | None = None,
                 **options: Any) -> None:
        self.model = model
        self.balancer: Balancer = create(method, tasks=TASKS, shared=model.shared_parameters(),
                                         last_layer=model.last_shared_layer(), source=source, **options)
        self.optimizer = torch.optim.SGD([*model.parameters(), *self.balancer.parameters()], lr=1e-3)
        self.specs = _specs()
        self.parallel = None if info is None else DataParallel(model, self.balancer, info,
                                                                replicated=list(self.balancer.parameters()))
        self.times: list[float] = []
        self.step: Callable[[dict[str, Tensor]], None] = self.backward

    def backward(self, batch: dict[str, Tensor]) -> None:
        """Forward, losses and the balancer's backward; in several processes the data-parallel way."""
        if self.parallel is None:
            output = self.model.forward_train(batch["image"])
            self.balancer.backward(task_losses(self.specs, output, batch), features=output.features)
            return
        output = self.parallel.forward_train(batch["image"])
        with self.parallel.losses_context():
            losses = task_losses(self.specs, output, batch)
        self.balancer.backward(losses, features=output.features, reducer=self.parallel.reducer)
        self.parallel.gradient_hook()

    def timed(self, batch: dict[str, Tensor], device: torch.device) -> None:
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        self.step(batch)
        self.optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.times.append(time.perf_counter() - start)


def _source(method: str) -> str | None:
    return None if method == "uniform" else "params"


def _single_process(setting: Setting) -> dict[str, float]:
    device = torch.device(setting.device)
    base = _model(setting).to(device)
    rows = {method: Row(copy.deepcopy(base), method, _source(method)) for method in ("uniform", setting.method)}
    batch = _batch(setting, setting.batch, device)
    for index in range(setting.warmup + setting.rounds):
        for row in rows.values():
            row.timed(batch, device)
        if index < setting.warmup:
            for row in rows.values():
                row.times.clear()
    return {method: statistics.median(row.times) for method, row in rows.items()}


def _counting_allreduce(counter, bucket):  # type: ignore[no-untyped-def]  # DDP rejects string annotations here
    """DDP communication hook: DDP's own averaging all-reduce, adding the bucket's bytes to ``counter[0]``."""
    buffer = bucket.buffer()
    counter[0] += buffer.numel() * buffer.element_size()
    return default_hooks.allreduce_hook(None, bucket)


def _worker(rank: int, store: str, setting: Setting, out: str) -> None:
    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if setting.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}", rank=rank,
                            world_size=setting.world)
    info = DistInfo(rank=rank, world_size=setting.world, local_rank=rank)
    base = _model(setting).to(device)
    per_rank = setting.batch // setting.world
    whole = _batch(setting, setting.batch, device)
    batch = {k: v[rank * per_rank : (rank + 1) * per_rank] for k, v in whole.items()}
    report = (
        _features_check(base, info, batch, whole) if setting.features_check else _timings(base, info, batch, setting)
    )
    if rank == 0:
        Path(out).write_text(json.dumps(report))
    dist.destroy_process_group()


#: The `features`-source methods of the check: (label, method, options).
FEATURE_METHODS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("mgda", "mgda", {}),
    ("graddrop flat", "graddrop", {"variant": "flat"}),
    ("graddrop paper", "graddrop", {"variant": "paper"}),
)


def _encoder_gradient(row: Row, batch: dict[str, Tensor]) -> Tensor:
    """One backward on the ``features`` source; the shared parameters' gradient (averaged over processes)."""
    row.optimizer.zero_grad(set_to_none=True)
    row.backward(batch)
    return torch.cat([p.grad.reshape(-1) for p in row.model.shared_parameters()])


def _features_check(
    base: nn.Module, info: DistInfo, batch: dict[str, Tensor], whole: dict[str, Tensor]
) -> dict[str, Any]:
    """W-process vs 1-process encoder gradient of one ``features`` step, and the seed-to-seed spread of 1 process."""
    for module in base.modules():  # per-image outputs: frozen BatchNorm, no dropout
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            module.eval()
    report: dict[str, Any] = {}
    for label, method, options in FEATURE_METHODS:
        distributed = _encoder_gradient(Row(copy.deepcopy(base), method, "features", info, **options), batch)
        if info.is_main:
            single = [_encoder_gradient(Row(copy.deepcopy(base), method, "features", **options, **seed), whole)
                      for seed in ({}, {"seed": 1} if method == "graddrop" else {})]
            norm = float(single[0].norm())
            report[label] = {
                "difference": float((distributed - single[0]).norm()) / norm,
                "cosine": float(torch.nn.functional.cosine_similarity(distributed.double(), single[0].double(), dim=0)),
                "seed_spread": float((single[1] - single[0]).norm()) / norm,
            }
    return report


def _timings(base: nn.Module, info: DistInfo, batch: dict[str, Tensor], setting: Setting) -> dict[str, Any]:
    """Step times and bytes of the multi-process rows (on rank 0)."""
    device = next(base.parameters()).device
    rows: dict[str, Row] = {}
    counters: dict[str, Callable[[], int]] = {}

    ddp_row = Row(copy.deepcopy(base), "uniform", None, info)
    ddp = ddp_row.parallel
    assert ddp is not None and ddp.ddp is not None
    ddp_bytes = [0]
    ddp.ddp.register_comm_hook(ddp_bytes, _counting_allreduce)
    rows["DDP"] = ddp_row
    counters["DDP"] = lambda: ddp_bytes[0] + ddp.reducer.bytes_reduced

    old_row = Row(copy.deepcopy(base), "uniform", None)
    old_bytes = [0]

    def per_parameter_step(local: dict[str, Tensor], row: Row = old_row) -> None:
        output = row.model.forward_train(local["image"])
        row.balancer.backward(task_losses(row.specs, output, local))
        for p in row.model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad.div_(setting.world)
            old_bytes[0] += p.grad.numel() * p.grad.element_size()

    old_row.step = per_parameter_step
    rows["per-parameter all-reduce"] = old_row
    counters["per-parameter all-reduce"] = lambda: old_bytes[0]

    method_row = Row(copy.deepcopy(base), setting.method, "params", info)
    gradient = method_row.parallel
    assert gradient is not None
    rows[f"{setting.method} (reducer)"] = method_row
    counters[f"{setting.method} (reducer)"] = lambda: gradient.reducer.bytes_reduced

    gradient_bytes = {name: 0 for name in rows}
    for index in range(setting.warmup + setting.rounds):
        for name, row in rows.items():
            before = counters[name]()
            row.timed(batch, device)
            gradient_bytes[name] = counters[name]() - before
        if index < setting.warmup:
            for row in rows.values():
                row.times.clear()
    report: dict[str, Any] = {name: {"seconds": statistics.median(row.times), "bytes": gradient_bytes[name]}
                              for name, row in rows.items()}
    report["_meta"] = {"parameters": sum(p.numel() for p in base.parameters()), "tensors": len(list(base.parameters())),
                       "shared": sum(p.numel() for p in base.shared_parameters())}
    return report


def _features_table(report: dict[str, Any], setting: Setting) -> Table:
    table = Table(title=f"features source, one step: {setting.world} processes vs 1 process on the global batch "
                        f"{setting.batch} (vanilla/{setting.backbone}, BatchNorm frozen, no dropout)")
    for column in ("method", "‖Δg‖/‖g‖ vs 1 process", "cosine", "1 process, seed 0 vs seed 1"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for label, row in report.items():
        table.add_row(label, f"{row['difference']:.2e}", f"{row['cosine']:.6f}", f"{row['seed_spread']:.2e}")
    return table


def _mb(value: float) -> str:
    return f"{value / 2**20:.2f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="tiny", help="backbone of the vanilla model (tiny, resnet18, ...)")
    parser.add_argument("--size", default="48x64", help="image size HxW")
    parser.add_argument("--batch", type=int, default=8, help="global batch (split over the processes)")
    parser.add_argument("--method", default="mgda", help="the gradient method (params source)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--world", type=int, default=2, help="processes (one GPU each with --device cuda)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--features-check", action="store_true",
                        help="instead of timings: W-process vs 1-process gradient of one step on the features source")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    setting = Setting(args.backbone, (height, width), args.batch, args.method, args.features_check, args.rounds,
                      args.warmup, args.world, args.device)
    if args.batch % args.world:
        parser.error(f"--batch {args.batch} is not a multiple of --world {args.world}")
    if args.device == "cuda" and torch.cuda.device_count() < args.world:
        parser.error(f"--device cuda needs {args.world} GPUs, {torch.cuda.device_count()} visible")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)

    single = {} if args.features_check else _single_process(setting)
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "report.json")
        mp.spawn(_worker, args=(str(Path(folder) / "store"), setting, out), nprocs=args.world)
        report = json.loads(Path(out).read_text())
    console = Console(width=120)
    if args.features_check:
        console.print(_features_table(report, setting))
        return
    meta = report.pop("_meta")

    table = Table(title=f"{args.world}-process step vs 1 process: vanilla/{args.backbone}, {len(TASKS)} tasks, global "
                        f"batch {args.batch} at {height}x{width}, {args.device}, median of {args.rounds} rounds")
    for column in ("row", "step (ms)", "vs 1 process", "all-reduce payload / step"):
        table.add_column(column, justify="left" if column == "row" else "right")
    table.add_row("1 process, uniform", f"{1e3 * single['uniform']:.1f}", "1.00", "-")
    table.add_row(f"1 process, {args.method} (params)", f"{1e3 * single[args.method]:.1f}",
                  f"{single[args.method] / single['uniform']:.2f}", "-")
    for name, row in report.items():
        reference = single[args.method] if name.endswith("(reducer)") else single["uniform"]
        table.add_row(f"{args.world} processes, {name}", f"{1e3 * row['seconds']:.1f}",
                      f"{row['seconds'] / reference:.2f}", _mb(row["bytes"]))
    console.print(table)
    four_bytes = 4 * meta["parameters"]
    console.print(
        f"model: {meta['parameters']:,} parameters in {meta['tensors']} tensors ({_mb(four_bytes)} of float32 "
        f"gradients), {meta['shared']:,} shared; the gradient method moves K={len(TASKS)} shared rows plus the "
        f"heads: expected {_mb(4 * (len(TASKS) * meta['shared'] + meta['parameters'] - meta['shared']))}"
    )


if __name__ == "__main__":
    main()
