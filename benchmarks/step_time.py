"""Training-step cost of the balancers: ratio to uniform, to the floor of T backward passes, and peak extra memory.

Model (default, the setting of issue 14): a timm ResNet-18 (``features_only``, last stage) with T = 4 dense heads
(3×3 conv to 64 channels, ReLU, 1×1 conv, bilinear upsampling to the input), batch 4 at 128×160, MSE to fixed
random targets. ``--model nyud-resnet18`` / ``nyud-resnet50`` use the package's own vanilla model (dilated
backbone, DeepLab heads) of the paper's NYUD runs; ``resnet50`` the plain timm ResNet-50.

A step is ``zero_grad + forward + losses + balancer.backward`` (plus the no-grad re-forward and ``post_step`` of
methods that declare ``needs_post_step_losses``). The optimizer step is left out: it is the same for every method
and the floor below does not contain it.

* **Gradients.** The timm encoder is built with ``zero_init_last=False``: timm's default zero-initialises the
  scale of each residual block's last BatchNorm, which leaves the last shared convolution (``layer4.1.conv2``)
  without gradient, so AvgNorm would weigh all-zero gradients. Before timing, every row's warm-up step must leave
  a non-zero gradient on the last shared layer's weight; the benchmark stops with the row's name otherwise.
* **Floor.** The ``params`` source needs T backward passes through the trunk. The ``floor`` row *measures* them:
  one forward, then T ``backward(retain_graph=True)`` calls, one per task loss, timed interleaved with the other
  rows. Its ratio to uniform is the "× floor" reference; the formula ``(f + T·b) / (f + b)``, with ``f`` and ``b``
  uniform's forward and backward timed separately, is printed beside it (``b`` includes all heads, so the formula
  overstates what T trunk backward passes cost).
* **Timing.** On CPU the clock is the process's CPU time (``time.process_time``; single-threaded by default, so
  it is the step's own work, not the time it waited for a core on a shared machine); on CUDA wall time after
  ``torch.cuda.synchronize``. Every row gets its own copy of the model. Rounds run one step of every row in a
  shuffled order, so load drifts hit all rows alike; a row's ratio is the median over rounds of its time divided by
  uniform's time in the same round (paired), and ``±`` is the half-width of a 95 % bootstrap interval of that median.
  Rounds continue until every interval is within ``--precision`` (default 0.05), ``--max-rounds`` or ``--budget``.
* **Memory.** Peak extra memory of one step: the highest level of allocated bytes during the step minus the level
  at its start, after a warm-up step. On CUDA, ``torch.cuda.max_memory_allocated``; on CPU, the running sum of the
  allocation and free events recorded by the torch profiler (``profile_memory=True``; tensors only, not Python
  objects or allocator caches: what a caching allocator would have to hold).
* **LibMTL's scheme** (``libmtl-mgda``): T ``loss.backward(retain_graph=True)`` calls, after each a flat copy of
  the shared ``.grad`` into a T×d matrix and zeroed shared gradients, ``G = grads grads^T`` on the device, the
  min-norm solve, and the combined gradient written back parameter by parameter (LibMTL ``AbsWeighting``
  ``_compute_grad(mode="backward")``, ``_grad2vec``, ``_reset_grad``), implemented here as a peer baseline.

Rows are ``method[:source]`` (``mgda:params``), ``floor`` and ``libmtl-mgda``; ``all`` adds every method at its
default source. ``uniform`` and ``floor`` are always timed.

    .venv/bin/python benchmarks/step_time.py                         # the issue's setting, default rows
    .venv/bin/python benchmarks/step_time.py --quick                 # a 64×80 smoke run (seconds)
    .venv/bin/python benchmarks/step_time.py --rows all --batched    # every method, plus vmapped MGDA
    .venv/bin/python benchmarks/step_time.py --device cuda --model nyud-resnet50 --size 448x576 --batch 2
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.nn import functional as F

from taskbalance.atomic import atomic_write_text
from taskbalance.balancers import Balancer, BalancerError, available, create, get
from taskbalance.balancers.base import infer_last_layer
from taskbalance.balancers.solvers import min_norm_point

CHANNELS = (40, 1, 3, 1, 13, 2, 5, 1)  # semseg-, depth-, normals-, edge-like outputs; cycled for T > 4
DEFAULT_ROWS = "uniform,floor,avgnorm,mgda:params,mgda:features,libmtl-mgda"
LIBMTL = "libmtl-mgda"
FLOOR = "floor"
SCHEMES = (LIBMTL, FLOOR)  # rows without a balancer


class TimmDense(nn.Module):
    """A timm ResNet's last stage as the shared encoder, and one small dense head per task."""

    def __init__(self, backbone: str, tasks: int) -> None:
        super().__init__()
        import timm

        # zero_init_last=False: timm's zero-initialised last BatchNorm scales give layer4.1.conv2 no gradient
        self.encoder = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=(4,),
                                         zero_init_last=False)
        width = self.encoder.feature_info.channels()[-1]
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, CHANNELS[i % len(CHANNELS)], 1))
            for i in range(tasks)
        )

    def forward(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        z = self.encoder(images)[-1]
        return [z], [
            F.interpolate(head(z), size=images.shape[-2:], mode="bilinear", align_corners=False) for head in self.heads
        ]


class PackageModel(nn.Module):
    """The package's vanilla multi-task model (dilated backbone, DeepLab heads), as in the NYUD configs."""

    def __init__(self, backbone: str, tasks: int) -> None:
        super().__init__()
        from taskbalance.models import build_model

        channels = {f"t{i}": CHANNELS[i % len(CHANNELS)] for i in range(tasks)}
        self.model = build_model("vanilla", backbone, task_channels=channels)

    def forward(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        out = self.model.forward_train(images)
        return list(out.features), list(out.predictions.values())


MODELS: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": lambda t: TimmDense("resnet18", t),
    "resnet50": lambda t: TimmDense("resnet50", t),
    "nyud-resnet18": lambda t: PackageModel("resnet18", t),
    "nyud-resnet50": lambda t: PackageModel("resnet50", t),
}


def shared_of(model: nn.Module) -> tuple[nn.Module | list[Tensor], nn.Module | None]:
    """(shared encoder, last shared layer) of a benchmark model (None: inferred by the balancer)."""
    if isinstance(model, PackageModel):
        return list(model.model.shared_parameters()), model.model.last_shared_layer()
    return model.encoder, None  # type: ignore[return-value]


def last_shared_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the benchmark model's last shared layer: what AvgNorm and GradNorm take gradients on."""
    if isinstance(model, PackageModel):
        return "last shared layer", model.model.last_shared_layer()
    return infer_last_layer(model.encoder)  # type: ignore[arg-type]


def check_gradients(row: Row) -> None:
    """Stop the benchmark when ``row``'s last step left no gradient on the last shared layer's weight."""
    name, layer = last_shared_layer(row.model)
    grad = layer.weight.grad  # type: ignore[union-attr]
    if grad is None or not bool(grad.ne(0).any()):
        raise SystemExit(f"{row.label}: the last shared layer {name} got {'no' if grad is None else 'an all-zero'} "
                         "gradient, so this row would time a step that learns nothing")


@dataclass
class Row:
    """One row of the table: a method on a source (or LibMTL's scheme), its model copy and measurements."""

    label: str
    model: nn.Module
    balancer: Balancer | None
    tasks: tuple[str, ...]
    times: list[float] = field(default_factory=list)
    forward: list[float] = field(default_factory=list)
    backward: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    error: str | None = None


def parse_rows(spec: str) -> list[str]:
    rows = [item.strip() for item in spec.split(",") if item.strip()]
    if "all" in rows:
        rows = [r for r in rows if r != "all"] + [m for m in available() if m not in rows]
    return list(dict.fromkeys(["uniform", FLOOR, *rows]))  # uniform and the measured floor: every ratio's references


def build_rows(labels: list[str], template: nn.Module, tasks: tuple[str, ...], device: torch.device) -> list[Row]:
    """One row per label: ``method[:source][+batched]`` (a balancer) or ``libmtl-mgda`` (the peer scheme)."""
    rows = []
    for label in labels:
        model = copy.deepcopy(template).to(device)
        balancer = None
        if label not in SCHEMES:
            method, _, source = label.partition(":")
            shared, last_layer = shared_of(model)
            kwargs: dict[str, object] = {"shared": shared, "last_layer": last_layer}
            if source.endswith("+batched"):
                source, kwargs["is_grads_batched"] = source.removesuffix("+batched"), True
            if source:
                kwargs["source"] = source
            balancer = create(method, tasks=tasks, **kwargs).to(device)
        rows.append(Row(label, model, balancer, tasks))
    return rows


def mse_losses(predictions: list[Tensor], targets: list[Tensor], tasks: tuple[str, ...]) -> dict[str, Tensor]:
    return {t: F.mse_loss(p, y) for t, p, y in zip(tasks, predictions, targets)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def shared_parameters(model: nn.Module) -> list[Tensor]:
    shared, _ = shared_of(model)
    return list(shared.parameters()) if isinstance(shared, nn.Module) else shared


def libmtl_backward(model: nn.Module, losses: dict[str, Tensor]) -> None:
    """LibMTL's MGDA: T backward() with flat copies of the shared gradient, Gramian, min-norm point, write-back."""
    params = shared_parameters(model)
    sizes = [p.numel() for p in params]
    values = list(losses.values())
    grads = torch.zeros(len(values), sum(sizes), device=values[0].device)
    for index, loss in enumerate(values):
        loss.backward(retain_graph=index + 1 != len(values))
        flat = torch.zeros(sum(sizes), device=values[0].device)  # _grad2vec
        offset = 0
        for p, size in zip(params, sizes):
            if p.grad is not None:
                flat[offset : offset + size] = p.grad.data.view(-1)
            offset += size
        grads[index] = flat
        for p in params:  # zero_grad_share_params
            if p.grad is not None:
                p.grad.zero_()
    weights = min_norm_point((grads @ grads.T).double().cpu()).to(grads)
    combined, offset = weights @ grads, 0
    for p, size in zip(params, sizes):  # _reset_grad
        p.grad.data = combined[offset : offset + size].contiguous().view(p.data.size()).data.clone()
        offset += size


def floor_backward(losses: dict[str, Tensor]) -> None:
    """The floor every ``params`` method pays: one backward pass per task loss through the whole model."""
    values = list(losses.values())
    for index, loss in enumerate(values):
        loss.backward(retain_graph=index + 1 != len(values))


def clock_for(device: torch.device) -> Callable[[], float]:
    """CPU time of this process on CPU (what a single-threaded step costs, whatever else the machine runs; the
    profiler is off while timing), wall time with synchronisation on CUDA."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def run_step(row: Row, images: Tensor, targets: list[Tensor], device: torch.device) -> tuple[float, float]:
    """One step of ``row``; returns (forward seconds, backward seconds)."""
    clock = clock_for(device)
    row.model.zero_grad(set_to_none=True)
    sync(device)
    start = clock()
    features, predictions = row.model(images)
    losses = mse_losses(predictions, targets, row.tasks)
    sync(device)
    middle = clock()
    if row.label == LIBMTL:
        libmtl_backward(row.model, losses)
    elif row.label == FLOOR:
        floor_backward(losses)
    else:
        row.balancer.backward(losses, features=features)
        if row.balancer.needs_post_step_losses:
            with torch.no_grad():
                row.balancer.post_step(mse_losses(row.model(images)[1], targets, row.tasks))
    sync(device)
    return middle - start, clock() - middle


def peak_extra_bytes(row: Row, images: Tensor, targets: list[Tensor], device: torch.device) -> int:
    """Peak allocated bytes above the level at the start of one step (see the module docstring)."""
    run_step(row, images, targets, device)  # warm-up: lazily built buffers and method state exist afterwards
    row.model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run_step(row, images, targets, device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run_step(row, images, targets, device)
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),  # type: ignore[union-attr]
        key=lambda e: e.start_ns(),
    )
    level = peak = 0
    for event in events:
        level += event.nbytes()
        peak = max(peak, level)
    return peak


def median_ratio(values: list[float], reference: list[float], seed: int) -> tuple[float, float]:
    """Median of the paired ratios and the half-width of its 95 % bootstrap interval."""
    ratios = [v / r for v, r in zip(values, reference)]
    median = statistics.median(ratios)
    if len(ratios) < 3:
        return median, float("inf")
    draw = random.Random(seed)
    boot = sorted(statistics.median(draw.choices(ratios, k=len(ratios))) for _ in range(400))
    return median, (boot[int(0.975 * len(boot)) - 1] - boot[int(0.025 * len(boot))]) / 2


@dataclass
class Settings:
    model: str
    size: tuple[int, int]
    batch: int
    tasks: int
    device: torch.device
    rows: list[str]
    batched: bool
    min_rounds: int
    max_rounds: int
    precision: float
    budget: float
    memory: bool
    seed: int


def benchmark(settings: Settings, console: Console) -> tuple[list[Row], int]:
    torch.manual_seed(settings.seed)
    tasks = tuple(f"t{i}" for i in range(settings.tasks))
    template = MODELS[settings.model](settings.tasks)
    labels = settings.rows + (["mgda:params+batched"] if settings.batched else [])
    rows = build_rows(labels, template, tasks, settings.device)
    generator = torch.Generator().manual_seed(settings.seed)
    images = torch.randn(settings.batch, 3, *settings.size, generator=generator).to(settings.device)
    with torch.no_grad():
        targets = [torch.randn(p.shape, generator=generator).to(settings.device) for p in template(images.cpu())[1]]
    order = random.Random(settings.seed)
    uniform = rows[0]
    start, rounds = time.perf_counter(), 0
    for rounds in range(1, settings.max_rounds + 2):  # round 1 is a warm-up
        order.shuffle(rows)
        for row in rows:
            if row.error is not None:
                continue
            try:
                forward, backward = run_step(row, images, targets, settings.device)
            except (BalancerError, FloatingPointError, RuntimeError) as error:
                row.error = f"{type(error).__name__}: {error}".splitlines()[0][:80]
                continue
            if rounds == 1:
                check_gradients(row)
            else:
                row.times.append(forward + backward)
                row.forward.append(forward)
                row.backward.append(backward)
        for row in rows:
            if row.balancer is not None:
                row.balancer.epoch_end()
        timed = rounds - 1
        if timed >= settings.min_rounds:
            widths = [
                median_ratio(r.times, uniform.times, settings.seed)[1]
                for r in rows
                if r.error is None and r is not uniform
            ]
            if max(widths, default=0.0) <= settings.precision or time.perf_counter() - start > settings.budget:
                break
    if settings.memory:
        for row in rows:
            if row.error is None:
                row.peak_bytes = peak_extra_bytes(row, images, targets, settings.device)
    rows.sort(key=lambda r: labels.index(r.label))
    return rows, rounds - 1


def render(rows: list[Row], settings: Settings, rounds: int) -> tuple[Table, str]:
    uniform, floor_row = rows[0], rows[1]
    f, b = statistics.median(uniform.forward), statistics.median(uniform.backward)
    t = settings.tasks
    formula = (f + t * b) / (f + b)
    floor, floor_width = median_ratio(floor_row.times, uniform.times, settings.seed)
    title = (
        f"{settings.model} {settings.size[0]}×{settings.size[1]} batch {settings.batch}, T={t}, {settings.device}, "
        f"{torch.get_num_threads()} thread(s), {rounds} interleaved rounds; uniform f = {1000 * f:.0f} ms, "
        f"b = {1000 * b:.0f} ms; floor measured (T backward passes) = {floor:.2f} ± {floor_width:.2f}× uniform, "
        f"formula (f + T·b)/(f + b) = {formula:.2f}"
    )
    columns = ["row", "median ms", "× uniform", "× floor (measured)", "× floor (formula)", f"× {LIBMTL}",
               "peak extra MiB", "memory × uniform"]
    libmtl = next((r for r in rows if r.label == LIBMTL and r.error is None), None)
    lines: list[list[str]] = []
    for row in rows:
        if row.error is not None:
            lines.append([row.label, "-", row.error, *[""] * (len(columns) - 3)])
            continue
        ratio, width = median_ratio(row.times, uniform.times, settings.seed)
        to_libmtl = "-"
        if libmtl is not None:
            to_libmtl = f"{median_ratio(row.times, libmtl.times, settings.seed)[0]:.2f}"
        memory = memory_ratio = "-"
        if row.peak_bytes is not None:
            memory = f"{row.peak_bytes / 2**20:.0f}"
            if uniform.peak_bytes:
                memory_ratio = f"{row.peak_bytes / uniform.peak_bytes:.2f}"
        lines.append([
            row.label, f"{1000 * statistics.median(row.times):.0f}", f"{ratio:.2f} ± {width:.2f}",
            f"{ratio / floor:.2f}", f"{ratio / formula:.2f}", to_libmtl, memory, memory_ratio,
        ])  # fmt: skip
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == "row" else "right")
    for line in lines:
        table.add_row(*line)
    markdown = "\n".join(
        [f"**{title}**", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        + ["| " + " | ".join(line) + " |" for line in lines]
    )
    return table, markdown + "\n"


def parse_size(value: str) -> tuple[int, int]:
    height, _, width = value.partition("x")
    return int(height), int(width)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet18")
    parser.add_argument("--size", type=parse_size, default=(128, 160), help="HxW (default 128x160)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=4, help="number of tasks T (default 4)")
    parser.add_argument(
        "--rows", default=DEFAULT_ROWS, help=f"method[:source] list, 'all', or {LIBMTL} (default {DEFAULT_ROWS})"
    )
    parser.add_argument("--batched", action="store_true", help="add mgda:params with is_grads_batched=True")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1: stable timings)")
    parser.add_argument("--min-rounds", type=int, default=8)
    parser.add_argument("--max-rounds", type=int, default=40)
    parser.add_argument(
        "--precision", type=float, default=0.05, help="stop when every ratio's 95%% half-width is below"
    )
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of timing rounds at most (default 150)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64x80, 3 rounds")
    parser.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = parse_rows(args.rows)
    unknown = [r for r in rows if r not in SCHEMES and r.partition(":")[0] not in available()]
    if unknown or args.tasks < 2:
        parser.error(f"unknown rows {unknown} or --tasks < 2; methods: {', '.join(available())}")
    for label in rows:
        if label not in SCHEMES and get(label.partition(":")[0]).requires == "losses" and ":" in label:
            parser.error(f"{label}: a loss-weighting method takes no gradient source")
    if args.quick:
        args.size, args.min_rounds, args.max_rounds = (64, 80), 3, 3
    device = torch.device(args.device)
    settings = Settings(args.model, args.size, args.batch, args.tasks, device, rows, args.batched, args.min_rounds,
                        args.max_rounds, args.precision, args.budget, not args.no_memory, args.seed)
    console = Console(width=160)
    measured, rounds = benchmark(settings, console)
    table, markdown = render(measured, settings, rounds)
    console.print(table)
    if args.markdown is not None:
        atomic_write_text(args.markdown, markdown)


if __name__ == "__main__":
    main()
