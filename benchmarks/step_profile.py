"""Where a training step of a preset's run goes: data, forward, losses, backward (balancer), optimizer, diagnostics,
evaluation, and the rendering of the synthetic scenes.

Trains one run of a packaged preset (default ``quick``: tiny vanilla MTL, batch 8 at 48×64, one torch thread) for
``--steps`` steps with timers (process CPU time) around the parts of the loop, and prints each part's CPU time per
step and its share:

* build: the datasets (the synthetic scenes are rendered once per process and cached), model, balancer;
* data: drawing the training batches; forward: ``model.forward_train`` during training; losses: the task losses;
* optimizer: ``optimizer.step``; backward: the rest of the driver's step (the balancer's backward: autograd, the
  per-task gradients of gradient-based methods and of the diagnosed steps);
* diagnostics: the records of the diagnosed steps; evaluation: validation and the final test evaluation.

    .venv/bin/python benchmarks/step_profile.py                          # quick preset, 200 steps, uniform
    .venv/bin/python benchmarks/step_profile.py --method avgnorm --set optim.lr=2e-3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

SPENT: dict[str, float] = defaultdict(float)
ACTIVE: list[str] = []


@contextmanager
def timing(part: str) -> Iterator[None]:
    """Add the CPU time of the block to ``part`` (not to a part that encloses it: the innermost part gets it)."""
    started = time.process_time()
    ACTIVE.append(part)
    inner_before = sum(SPENT.values())
    try:
        yield
    finally:
        ACTIVE.pop()
        SPENT[part] += time.process_time() - started - (sum(SPENT.values()) - inner_before)


def timed(part: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "evaluation" in ACTIVE and part != "evaluation":
            return function(*args, **kwargs)
        with timing(part):
            return function(*args, **kwargs)
    return wrapper


def timed_batches(loader: Any) -> Iterator[Any]:
    iterator = iter(loader)
    while True:
        with timing("data"):
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--method", default="uniform")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value (YAML value)")
    args = parser.parse_args()

    from taskbalance.balancers.driver import StepDriver
    from taskbalance.training import loop
    from taskbalance.training import trainer as training
    from taskbalance.training.config import apply_settings, validate_config
    from taskbalance.training.hooks import final, logs, validation
    from taskbalance.training.presets import load_raw

    settings = {"optim.iterations": args.steps, "optim.eval_every": max(args.steps // 2, 1), "method.name": args.method}
    settings.update({key: yaml.safe_load(value) for key, value in (o.split("=", 1) for o in args.overrides)})
    config = validate_config(apply_settings(load_raw(args.preset), settings))
    validation.evaluate = timed("evaluation", validation.evaluate)  # type: ignore[assignment]
    final.evaluate = timed("evaluation", final.evaluate)  # type: ignore[assignment]
    loop.task_losses = timed("losses", loop.task_losses)  # type: ignore[assignment]
    logs.diagnostic_record = timed("diagnostics", logs.diagnostic_record)  # type: ignore[assignment]
    StepDriver.step = timed("backward", StepDriver.step)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder:
        with timing("build"):
            trainer = training.Trainer(config, Path(folder) / "run", show_progress=False)
        trainer.model.forward_train = timed("forward", trainer.model.forward_train)  # type: ignore[method-assign]
        trainer.loop.optimizer.step = timed("optimizer", trainer.loop.optimizer.step)  # type: ignore[method-assign]
        batches = trainer.loop.epochs.batches
        trainer.loop.epochs.batches = lambda epoch, skip: timed_batches(batches(epoch, skip))  # type: ignore[method-assign]
        with timing("rest"):
            trainer.fit()
    train = sum(v for k, v in SPENT.items() if k != "build")
    print(f"{args.preset} / {args.method}: {args.steps} steps, {config.threads} thread(s), batch "
          f"{config.data.batch_size}, diagnostics every {config.diagnostics.every}, evaluation every "
          f"{config.optim.eval_every}")
    print(f"build: {SPENT['build']:.2f} CPU-s; training and evaluation: {train:.2f} CPU-s "
          f"({1000 * train / args.steps:.1f} ms per step)")
    for part in ("data", "forward", "losses", "backward", "optimizer", "diagnostics", "evaluation", "rest"):
        print(f"  {part:12s} {1000 * SPENT[part] / args.steps:7.2f} ms/step  {100 * SPENT[part] / train:5.1f}%")


if __name__ == "__main__":
    main()
