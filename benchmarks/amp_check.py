"""Mixed-precision smoke check: a few training steps per method under fp16 autocast with a GradScaler.

``taskbalance train`` covers bf16 (config ``amp: true``); the trainer has no fp16 mode, so this script builds the
same run from the packaged preset (``--preset``, synthetic scenes, the package's model, task losses, balancer and
optimizer, all through ``taskbalance.training.components``) and steps it itself:

    forward under autocast(fp16) → losses (fp32) → balancer.backward(scaled losses) → scaler.step → scaler.update

It fails (exit 1) on a non-finite loss, or when every step was skipped. A step whose per-task gradients overflow
raises ``NonFiniteGradientError`` before anything is written; the loop then skips it and lowers the scale, as
``GradScaler`` does for an ordinary step with infinite gradients. Caveat: the balancer sees the
*scaled* losses. Methods whose update is equivariant to a common loss scale (uniform, AvgNorm, MGDA and every
other loss or gradient weighting whose weights are scale-free) are exact; Nash-MTL's normalised update and FAMO's
loss-ratio weights are not (their unscaled update is off by the scale), which this check does not judge.

    .venv/bin/python benchmarks/amp_check.py --device cuda --size 448x576 --steps 50 \\
        --methods uniform,avgnorm,mgda,nashmtl,famo
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from taskbalance.balancers import NonFiniteGradientError
from taskbalance.training.batches import to_device
from taskbalance.training.components import (
    build_balancer,
    build_model_for,
    build_optimization,
    build_specs,
    build_split,
)
from taskbalance.training.evaluate import task_losses
from taskbalance.training.presets import load_config


def parse_size(value: str) -> tuple[int, int]:
    height, _, width = value.partition("x")
    return int(height), int(width)


def overrides(method: str, device: torch.device, size: tuple[int, int], steps: int, batch: int) -> list[str]:
    """The ``--set`` overrides of ``taskbalance train`` that turn a preset into this check's run."""
    return [
        f"device={device.type}", "amp=false", "seed=0", "data.name=synthetic", "data.augment=false",
        "data.num_workers=0", f"data.batch_size={batch}",
        f"data.options={{resolution: [{size[0]}, {size[1]}], num_scenes: 2, views_per_scene: {max(batch, 4)}}}",
        f"method.name={method}", *(["method.source=params"] if method == "mgda" else []),
        f"optim.iterations={steps}", "optim.epochs=null",
    ]  # fmt: skip


def run(
    preset: str,
    method: str,
    device: torch.device,
    size: tuple[int, int],
    steps: int,
    batch: int,
    dtype: torch.dtype,
    init_scale: float,
) -> str:
    """``steps`` mixed-precision steps of ``method``; a one-line summary (RuntimeError on a non-finite loss)."""
    config = load_config(preset, overrides(method, device, size, steps, batch))
    torch.manual_seed(0)
    train_set = build_split(config, "train", train=True)
    info = train_set.info  # type: ignore[attr-defined]
    specs = build_specs(config, info)
    model = build_model_for(config, info).to(device)
    balancer = build_balancer(config, model).to(device)
    optimizer = build_optimization(config, model, balancer, {}, steps).optimizer
    scaler = torch.amp.GradScaler(device.type, init_scale=init_scale, enabled=dtype == torch.float16)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True, drop_last=True)
    done = skipped = 0
    start = time.perf_counter()

    def forward(items: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        with torch.autocast(device.type, dtype=dtype):
            output = model.forward_train(items["image"])
        values = task_losses(specs, output, items)
        bad = [t for t, v in values.items() if not math.isfinite(float(v.detach()))]
        if bad:
            raise RuntimeError(f"{method}: non-finite loss of {bad} at step {done}")
        return {t: scaler.scale(v) for t, v in values.items()}, output.features

    while done < steps:
        for batch_items in loader:
            items = to_device(batch_items, device)
            optimizer.zero_grad(set_to_none=True)
            scaled, features = forward(items)
            scale = scaler.get_scale() if scaler.is_enabled() else 1.0
            try:
                balancer.backward(scaled, features=features)
            except NonFiniteGradientError:  # fp16 overflow: skip the step and lower the scale, as the scaler would
                if not scaler.is_enabled():
                    raise
                scaler.update(scale * scaler.get_backoff_factor())
                skipped += 1
            else:
                scaler.step(optimizer)
                scaler.update()
                skipped += int(scaler.is_enabled() and scaler.get_scale() < scale)
                if balancer.needs_post_step_losses:
                    with torch.no_grad():
                        balancer.post_step(forward(items)[0])
            done += 1
            if done == steps:
                break
    if skipped == steps:
        raise RuntimeError(f"{method}: the GradScaler skipped all {steps} steps (gradients never finite)")
    total = sum(float(v.detach()) for v in scaled.values()) / (scaler.get_scale() if scaler.is_enabled() else 1.0)
    return (f"{method}: {steps} steps, {skipped} skipped by the scaler, final summed loss ≈ {total:.4g}, "
            f"{time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--preset", default="nyud-resnet18", help="packaged training preset (default nyud-resnet18)")
    parser.add_argument("--methods", default="uniform,avgnorm,mgda,nashmtl,famo")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16")
    parser.add_argument("--size", type=parse_size, default=(448, 576))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument(
        "--init-scale", type=float, default=2.0**16, help="GradScaler's initial scale (torch's default 2^16)"
    )
    args = parser.parse_args(argv)
    dtype = torch.float16 if args.dtype == "fp16" else torch.bfloat16
    failures = 0
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        try:
            print(
                run(
                    args.preset,
                    method,
                    torch.device(args.device),
                    args.size,
                    args.steps,
                    args.batch,
                    dtype,
                    args.init_scale,
                ),
                flush=True,
            )
        except (RuntimeError, FloatingPointError) as error:
            failures += 1
            print(f"FAILED {error}".splitlines()[0], flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
