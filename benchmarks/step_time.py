"""Training-step cost of every balancer, relative to ``uniform``, on a small multi-task CNN.

Model: a shared 3-layer conv encoder (64×64 RGB → 32×16×16 features) and one small conv head per task
(4 tasks, MSE to fixed random targets), batch 8, Adam. A step is ``forward + balancer.backward + optimizer.step``
(plus ``post_step``'s extra no-grad forward for the methods that need it, FAMO: it is part of their cost).

Every (method, gradient source) pair gets its own copy of the same model; the pairs are timed side by side in
one process, one step each per round in a shuffled order, so machine load drifts hit all of them alike. The
table gives the median step time and its ratio to ``uniform``'s median (and, on CUDA, the ratio of the step's peak
extra memory). Loss-weighting methods compute no per-task gradients, so the source does not apply to them ("-").
CPU runs are single-threaded by default (``--threads``): on a shared machine intra-op threads make timings erratic.

    python benchmarks/step_time.py --steps 20 --methods uniform,pcgrad,cagrad --sources params,features --device cpu
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from dataclasses import dataclass, field

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from taskbalance.balancers import Balancer, BalancerError, available, create, get
from taskbalance.balancers.base import GRADIENT_SOURCES

TASKS = ("t1", "t2", "t3", "t4")


class SmallMultiTaskCNN(nn.Module):
    """Shared conv encoder (64×64 → 32×16×16) and one conv head per task."""

    def __init__(self, tasks: tuple[str, ...] = TASKS, width: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.heads = nn.ModuleDict(
            {t: nn.Sequential(nn.Conv2d(width, width // 2, 3, padding=1), nn.ReLU(), nn.Conv2d(width // 2, 1, 1)) for t in tasks}
        )

    def forward(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        features = self.encoder(images)
        return features, {t: head(features) for t, head in self.heads.items()}


@dataclass
class Run:
    """One (method, source) pair: its model copy, optimizer and measurements."""

    method: str
    source: str | None
    model: SmallMultiTaskCNN
    balancer: Balancer
    optimizer: torch.optim.Optimizer
    times: list[float] = field(default_factory=list)
    peak_bytes: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def label(self) -> str:
        return self.source or "-"


def losses_of(predictions: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    return {t: (predictions[t] - targets[t]).pow(2).mean() for t in predictions}


def overrides(balancer: Balancer, hook: str) -> bool:
    return getattr(type(balancer), hook) is not getattr(Balancer, hook)


def train_step(run: Run, images: Tensor, targets: dict[str, Tensor]) -> None:
    run.optimizer.zero_grad(set_to_none=True)
    features, predictions = run.model(images)
    losses = losses_of(predictions, targets)
    run.balancer.backward(losses, features=features)
    run.optimizer.step()
    if overrides(run.balancer, "post_step"):
        with torch.no_grad():
            run.balancer.post_step(losses_of(run.model(images)[1], targets))


def build_runs(methods: list[str], sources: list[str], device: torch.device, seed: int) -> list[Run]:
    torch.manual_seed(seed)
    template = SmallMultiTaskCNN().to(device)
    runs = []
    for method in methods:
        cls = get(method)
        method_sources: list[str | None] = (
            [None] if cls.requires == "losses" else [s for s in sources if s in cls.supported_sources]
        )
        for source in method_sources:
            model = copy.deepcopy(template)
            kwargs = {} if source is None else {"source": source}
            balancer = create(method, tasks=TASKS, shared=model.encoder, **kwargs).to(device)
            optimizer = torch.optim.Adam([*model.parameters(), *balancer.parameters()], lr=1e-3)
            runs.append(Run(method, source, model, balancer, optimizer))
    return runs


def timed_step(run: Run, images: Tensor, targets: dict[str, Tensor], device: torch.device) -> None:
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    train_step(run, images, targets)
    if cuda:
        torch.cuda.synchronize(device)
    run.times.append(time.perf_counter() - start)
    if cuda:
        run.peak_bytes.append(torch.cuda.max_memory_allocated(device) - before)


def benchmark(methods: list[str], sources: list[str], device: torch.device, steps: int, warmup: int, batch: int, seed: int) -> list[Run]:
    runs = build_runs(methods, sources, device, seed)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, 64, 64, generator=generator).to(device)
    targets = {t: torch.randn(batch, 1, 16, 16, generator=generator).to(device) for t in TASKS}
    order = random.Random(seed)
    for round_index in range(warmup + steps):
        order.shuffle(runs)
        for run in runs:
            if run.error is not None:
                continue
            try:
                if round_index < warmup:
                    train_step(run, images, targets)
                else:
                    timed_step(run, images, targets, device)
            except (BalancerError, FloatingPointError, RuntimeError) as error:
                run.error = f"{type(error).__name__}: {error}".splitlines()[0]
        for run in runs:
            run.balancer.epoch_end()
    return sorted(runs, key=lambda r: (r.method != "uniform", r.method, GRADIENT_SOURCES.index(r.source) if r.source else -1))


def render(runs: list[Run], device: torch.device, steps: int, console: Console) -> None:
    reference = next((r for r in runs if r.method == "uniform" and r.times), None)
    base_time = statistics.median(reference.times) if reference else None
    base_peak = statistics.median(reference.peak_bytes) if reference and reference.peak_bytes else None
    table = Table(title=f"Step time on {device} ({len(TASKS)} tasks, {steps} timed steps each, ratio to uniform)")
    table.add_column("method")
    table.add_column("source")
    table.add_column("median ms", justify="right")
    table.add_column("× uniform", justify="right")
    if base_peak:
        table.add_column("peak mem × uniform", justify="right")
    for run in runs:
        if run.error is not None or not run.times:
            cells = [run.method, run.label, "-", run.error or "no timing"] + (["-"] if base_peak else [])
            table.add_row(*cells)
            continue
        median = statistics.median(run.times)
        cells = [run.method, run.label, f"{1000 * median:.1f}", f"{median / base_time:.2f}" if base_time else "-"]
        if base_peak:
            cells.append(f"{statistics.median(run.peak_bytes) / base_peak:.2f}")
        table.add_row(*cells)
    console.print(table)


def parse_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per (method, source) (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--methods", type=parse_list, default=None, help="comma-separated methods (default: all)")
    parser.add_argument("--sources", type=parse_list, default=list(GRADIENT_SOURCES), help="comma-separated gradient sources")
    parser.add_argument("--device", type=parse_list, default=["cpu", "cuda"], help="devices; cuda is skipped when absent")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1: stable timings)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    console = Console()
    methods = args.methods or list(available())
    unknown = [m for m in methods if m not in available()]
    bad_sources = [s for s in args.sources if s not in GRADIENT_SOURCES]
    if unknown or bad_sources or args.steps < 1:
        parser.error(f"unknown methods {unknown} / sources {bad_sources}, or --steps < 1; methods: {', '.join(available())}")
    if "uniform" not in methods:
        methods = ["uniform", *methods]  # the reference of the ratios
    for name in args.device:
        if name.startswith("cuda") and not torch.cuda.is_available():
            console.print(f"[yellow]{name}: CUDA is not available, skipped[/yellow]")
            continue
        device = torch.device(name)
        runs = benchmark(methods, args.sources, device, args.steps, args.warmup, args.batch, args.seed)
        render(runs, device, args.steps, console)


if __name__ == "__main__":
    main()
