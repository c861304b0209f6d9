"""Every method gives the same direction on a device as on the CPU for the same per-task gradients J.

For each method in ``available()``: two balancers built alike, one on the CPU and one on ``--device``, driven by
``combine(J, losses)`` for a few steps (with ``post_step`` and ``epoch_end``, so stateful methods advance) on the
same float64 J (K = 3 tasks, d = 1000). Prints one line per method with the largest relative difference of the
directions, ``max |d_dev − d_cpu| / max(|d_cpu|_∞, 1e-12)``, and exits 1 when any exceeds ``--tolerance`` (1e-5).
"""

from __future__ import annotations

import argparse
import sys

import torch

from taskbalance.balancers import available, create

TASKS = ("a", "b", "c")


def directions(
    method: str, device: torch.device, jacobians: list[torch.Tensor], losses: list[torch.Tensor]
) -> list[torch.Tensor]:
    torch.manual_seed(0)  # methods without a seed option draw theirs from the global generator (RLW)
    balancer = create(method, tasks=TASKS).to(device)
    out = []
    for jacobian, loss in zip(jacobians, losses):
        direction, _ = balancer.combine(jacobian.to(device), loss)
        balancer.post_step(loss * 0.9)
        balancer.epoch_end()
        out.append(direction.cpu())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    jacobians = [torch.randn(len(TASKS), 1000, generator=generator, dtype=torch.float64) for _ in range(args.steps)]
    losses = [torch.rand(len(TASKS), generator=generator, dtype=torch.float64) + 0.5 for _ in range(args.steps)]
    worst_overall, failed = 0.0, []
    for method in available():
        reference = directions(method, torch.device("cpu"), jacobians, losses)
        other = directions(method, device, jacobians, losses)
        worst = max(float((o - r).abs().max() / r.abs().max().clamp_min(1e-12)) for o, r in zip(other, reference))
        worst_overall = max(worst_overall, worst)
        status = "ok" if worst <= args.tolerance else "DIFFERS"
        if worst > args.tolerance:
            failed.append(method)
        print(f"{method:12s} {status:8s} max relative difference {worst:.2e} over {args.steps} steps", flush=True)
    print(
        f"{len(available()) - len(failed)}/{len(available())} methods agree on {device} and cpu to {args.tolerance:g} "
        f"(worst {worst_overall:.2e})"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
