"""Throughput of the synthetic dataset: rendering (views/s) and serving items with and without augmentation.

    .venv/bin/python benchmarks/data_throughput.py [--resolution 64x80] [--scenes 24] [--views 16] [--threads 2] \\
        [--workers 2]

Every line gives two rates: per second of wall time (what a run waits for on this machine now) and per second of
CPU time (user + system of this process and of its DataLoader worker processes, which are counted once they have
exited: what the work costs, whatever else the machine runs). On a shared machine the wall rate can be many times
lower than the CPU rate. Serving is timed after one warm-up item (one-off set-up is not throughput). Prints numbers
only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import torch
from torch.utils.data import DataLoader

from taskbalance.data import build_dataset

T = TypeVar("T")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) and of its exited, waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(work: Callable[[], T]) -> tuple[T, float, float]:
    """``work()``'s result, wall seconds and CPU seconds (see :func:`cpu_seconds`)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = work()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def count_images(loader: DataLoader) -> int:
    """Images in one pass over ``loader``."""
    return sum(len(batch["image"]) for batch in loader)


def rates(count: int, wall: float, cpu: float, unit: str) -> str:
    return (f"{count / wall:.0f} {unit}/s wall, {count / cpu:.0f} {unit}/s of CPU "
            f"({count} in {wall:.2f} s wall, {cpu:.2f} CPU-s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", default="64x80", help="HxW")
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader worker processes (their CPU time is counted)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.resolution.split("x"))
    options = {"num_scenes": args.scenes, "views_per_scene": args.views, "resolution": (height, width)}

    # renders; later builds reuse the in-memory split
    dataset, wall, cpu = timed(lambda: build_dataset("synthetic", "train", **options))
    print(f"synthetic {height}x{width}, {args.scenes} scenes x {args.views} views, {args.threads} thread(s), "
          f"{args.workers} worker process(es)")
    print(f"render (once, cached in memory): {rates(len(dataset), wall, cpu, 'views')}")

    for augment in (False, True):
        dataset = build_dataset("synthetic", "train", augment=augment, augment_seed=0, **options)
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
        dataset[0]  # warm-up: one-off set-up (imports, caches) is not throughput
        count, wall, cpu = timed(partial(count_images, loader))  # workers exit at the end
        kind = "augmented" if augment else "plain    "
        print(f"serve {kind} items (batch {args.batch_size}): {rates(count, wall, cpu, 'images')}")

    noisy = build_dataset("synthetic", "train", label_noise=True, **options)
    noisy[0]
    count, wall, cpu = timed(lambda: sum(noisy[index] is not None for index in range(len(noisy))))
    print(f"serve items with label noise: {rates(count, wall, cpu, 'images')}")


if __name__ == "__main__":
    main()
