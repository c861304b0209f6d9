"""Throughput of the synthetic dataset: rendering (views/s) and serving items with and without augmentation.

    .venv/bin/python benchmarks/data_throughput.py [--resolution 64x80] [--scenes 24] [--views 16] [--threads 2]

Prints numbers only; nothing is asserted (timings depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from taskbalance.data import build_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", default="64x80", help="HxW")
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.resolution.split("x"))
    options = {"num_scenes": args.scenes, "views_per_scene": args.views, "resolution": (height, width)}

    start = time.perf_counter()
    dataset = build_dataset("synthetic", "train", **options)  # renders; later builds reuse the in-memory split
    render_s = time.perf_counter() - start
    print(f"synthetic {height}x{width}, {args.scenes} scenes x {args.views} views, {args.threads} thread(s)")
    print(f"render (once, cached in memory): {len(dataset)} views in {render_s:.2f} s = {len(dataset) / render_s:.0f} views/s")

    for augment in (False, True):
        dataset = build_dataset("synthetic", "train", augment=augment, augment_seed=0, **options)
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
        start = time.perf_counter()
        count = sum(len(batch["image"]) for batch in loader)
        elapsed = time.perf_counter() - start
        print(f"serve {'augmented' if augment else 'plain    '} items (batch {args.batch_size}): {count / elapsed:.0f} images/s")

    noisy = build_dataset("synthetic", "train", label_noise=True, **options)
    start = time.perf_counter()
    for index in range(len(noisy)):
        noisy[index]
    print(f"serve items with label noise: {len(noisy) / (time.perf_counter() - start):.0f} images/s")


if __name__ == "__main__":
    main()
