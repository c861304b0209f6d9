"""Crash-safe checkpoints: model weights in safetensors, the rest of the training state in a ``torch.save`` file
that is loaded back with ``weights_only=True`` (plain containers and tensors only).

A checkpoint named ``last`` or ``best`` is a folder ``<name>-<step>/`` plus a pointer ``<name>.json`` that is
replaced atomically once the folder is complete; older folders are deleted afterwards. A crash at any moment
therefore leaves the previous checkpoint intact and pointed to.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from taskbalance.training.rundir import write_json

WEIGHTS = "model.safetensors"
STATE = "state.pt"


@dataclass(frozen=True)
class Checkpoint:
    """A saved checkpoint: its folder and the step it was taken at."""

    path: Path
    step: int

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def state(self) -> Path:
        return self.path / STATE


def save_checkpoint(folder: Path, name: str, step: int, model: nn.Module, state: dict[str, Any] | None = None) -> Checkpoint:
    """Save ``model`` (and ``state`` when given) as checkpoint ``name`` at ``step``, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{step:08d}"
    staging = folder / f".{target.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_model(model, str(staging / WEIGHTS))
    if state is not None:
        torch.save(state, staging / STATE)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    write_json(folder / f"{name}.json", {"step": step, "path": target.name})
    for old in folder.glob(f"{name}-*"):
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return Checkpoint(target, step)


def find_checkpoint(folder: Path, name: str) -> Checkpoint | None:
    """The checkpoint ``name`` that the pointer file designates, or None."""
    pointer = folder / f"{name}.json"
    if not pointer.is_file():
        return None
    info = json.loads(pointer.read_text())
    path = folder / info["path"]
    if not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"checkpoint pointer {pointer} names {path}, which has no {WEIGHTS}")
    return Checkpoint(path, int(info["step"]))


def load_weights(model: nn.Module, checkpoint: Checkpoint | Path, device: torch.device | str = "cpu") -> None:
    """Load safetensors weights into ``model`` (strict: every key must match)."""
    path = checkpoint.weights if isinstance(checkpoint, Checkpoint) else checkpoint
    missing, unexpected = load_model(model, str(path), strict=False, device=str(device))
    if missing or unexpected:
        raise RuntimeError(f"{path} does not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")


def load_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The training state of a checkpoint, loaded with ``weights_only=True``."""
    return torch.load(checkpoint.state, map_location="cpu", weights_only=True)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as weights_only-loadable containers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
