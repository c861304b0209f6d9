"""Crash-safe, verified checkpoints: model weights in safetensors, the rest of the training state in a ``torch.save``
file that is loaded back with ``weights_only=True`` (plain containers and tensors only).

A checkpoint named ``last`` or ``best`` is a folder ``<name>-<step>/`` holding its files and a ``manifest.json`` with
the step and the sha256 of every file, written last; the folder is staged under a hidden name and renamed into
place once complete (every file and folder fsynced), then the pointer ``<name>.json`` is replaced atomically. The
previous checkpoint is kept (one older folder); older ones are deleted. A save that fails (a full disk, any OS error)
removes its staging folder and raises :class:`CheckpointWriteError`: one line naming the checkpoint, the folder, the
reason, and the previous checkpoint, which is intact.

Loading verifies every file against its manifest. A damaged (truncated, altered) or missing file, or an unreadable
pointer, is named in one line and the newest intact checkpoint of that name is used instead; when none is intact,
:class:`CheckpointError` names the damaged file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from taskbalance.atomic import WriteError, atomic_target, atomic_write_bytes, describe_os_error, fsync_path
from taskbalance.training.rundir import write_json

WEIGHTS = "model.safetensors"
STATE = "state.pt"
MANIFEST = "manifest.json"
#: Checkpoints of one name kept on disk: the newest and the previous one (the fallback when the newest is damaged).
KEEP = 2


class CheckpointError(ValueError):
    """No intact checkpoint: the message names the damaged or missing file."""


class CheckpointWriteError(WriteError):
    """A checkpoint could not be written; the message says where, why, and which previous checkpoint is intact."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of an older intact one."""


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


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _step_of(folder: Path, name: str) -> int | None:
    suffix = folder.name[len(name) + 1:]
    return int(suffix) if folder.name.startswith(f"{name}-") and suffix.isdigit() and folder.is_dir() else None


def _folders(folder: Path, name: str) -> list[Path]:
    """The checkpoint folders of ``name``, newest first (staging folders are hidden and not listed)."""
    found = [(step, path) for path in folder.glob(f"{name}-*") if (step := _step_of(path, name)) is not None]
    return [path for _, path in sorted(found, reverse=True)]


def _as_os_error(error: SafetensorError) -> OSError | None:
    """The OS error inside a safetensors write error (``... (os error 28)``), if it names one."""
    found = re.search(r"os error (\d+)", str(error))
    return OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found else None


def _write(staging: Path, model: nn.Module, state: dict[str, Any] | None, step: int) -> None:
    """The checkpoint's files in ``staging``, each fsynced (the state is serialised in memory first, so that a write
    failure is the OS error itself rather than torch's archive error)."""
    with atomic_target(staging / WEIGHTS) as weights:  # safetensors alone leaves the file private (0600)
        try:
            save_model(model, str(weights))
        except SafetensorError as error:
            raise _as_os_error(error) or error from None
    if state is not None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(staging / STATE, buffer.getvalue())
    files = sorted(p.name for p in staging.iterdir())
    write_json(staging / MANIFEST, {"step": step, "sha256": {f: file_sha256(staging / f) for f in files}})


def checkpoint_folder(folder: Path, name: str, step: int) -> Path:
    """The folder of checkpoint ``name`` at ``step`` inside ``folder`` (``last-00000040``)."""
    return folder / f"{name}-{step:08d}"


def save_checkpoint(
    folder: Path, name: str, step: int, model: nn.Module, state: dict[str, Any] | None = None
) -> Checkpoint:
    """Save ``model`` (and ``state`` when given) as checkpoint ``name`` at ``step``, atomically, with its manifest.

    Raises :class:`CheckpointWriteError` (one line; the staging folder removed, the previous checkpoint untouched)
    when a file cannot be written.
    """
    target = checkpoint_folder(folder, name, step)
    staging = folder / f".{target.name}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        _write(staging, model, state, step)
        fsync_path(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        fsync_path(folder)
        write_json(folder / f"{name}.json", {"step": step, "path": target.name})
    except (OSError, SafetensorError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        reason = describe_os_error(error) if isinstance(error, OSError) else str(error).splitlines()[0]
        raise CheckpointWriteError(f"cannot write checkpoint {target.name} in {folder}: {reason}; "
                                   f"{intact_note(folder)}") from None
    for old in _folders(folder, name)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return Checkpoint(target, step)


def intact_note(folder: Path) -> str:
    """The last checkpoint in ``folder`` that a resume would use, as the end of a one-line error message."""
    try:
        found = find_checkpoint(folder, "last", on_damage=lambda message: None)
    except CheckpointError:
        found = None
    if found is None:
        return "no checkpoint was saved yet"
    return f"the last checkpoint {found.path.name} (step {found.step}) in {folder} is intact"


def verify_checkpoint(path: Path) -> str | None:
    """None when every file of checkpoint folder ``path`` matches its manifest, else what is wrong (naming the file)."""
    manifest = path / MANIFEST
    try:
        info = json.loads(manifest.read_text())
        expected = dict(info["sha256"])
        int(info["step"])
    except FileNotFoundError:
        return f"{manifest} is missing (the checkpoint is incomplete)"
    except (ValueError, KeyError, TypeError) as error:
        return f"{manifest} is damaged ({type(error).__name__})"
    if WEIGHTS not in expected:
        return f"{manifest} lists no {WEIGHTS}"
    for file, digest in expected.items():
        if not (path / file).is_file():
            return f"{path / file} is missing"
        if file_sha256(path / file) != digest:
            return f"{path / file} is damaged (its sha256 differs from {MANIFEST}: truncated or altered)"
    return None


def _warn(message: str) -> None:
    warnings.warn(message, CheckpointWarning, stacklevel=3)


def find_checkpoint(folder: Path, name: str, on_damage: Callable[[str], None] = _warn) -> Checkpoint | None:
    """The newest intact checkpoint ``name`` in ``folder`` (None when none was saved).

    The pointer's target is tried first, then the other folders, newest first; every damaged one (and an unreadable
    pointer) is reported in one line through ``on_damage``. Raises :class:`CheckpointError` when checkpoints exist
    but none is intact.
    """
    pointer = folder / f"{name}.json"
    candidates = _folders(folder, name)
    if pointer.is_file():
        try:
            target = folder / str(json.loads(pointer.read_text())["path"])
            candidates = [target] + [c for c in candidates if c != target]
        except (ValueError, KeyError, TypeError) as error:
            on_damage(f"{pointer} is damaged ({type(error).__name__}); looking for the newest intact {name} checkpoint")
    problems: list[str] = []
    for path in candidates:
        problem = verify_checkpoint(path)
        if problem is None:
            if problems:
                on_damage(f"{problems[0]}; using the previous intact checkpoint {path.name}")
            return Checkpoint(path, int(json.loads((path / MANIFEST).read_text())["step"]))
        problems.append(problem)
    if problems:
        raise CheckpointError(f"{problems[0]}, and no earlier intact {name} checkpoint is left in {folder}")
    return None


def _load(path: Path, loader: Callable[[], Any], errors: tuple[type[BaseException], ...]) -> Any:
    """``loader()``, with a reading failure of ``path`` (the ``errors`` its reader raises) as one line."""
    try:
        return loader()
    except errors as error:
        text = str(error).strip()
        raise CheckpointError(
            f"{path} cannot be read ({text.splitlines()[0] if text else type(error).__name__})"
        ) from None


def load_weights(model: nn.Module, checkpoint: Checkpoint | Path, device: torch.device | str = "cpu") -> None:
    """Load safetensors weights into ``model`` (strict: every key must match)."""
    path = checkpoint.weights if isinstance(checkpoint, Checkpoint) else checkpoint
    missing, unexpected = _load(path, lambda: load_model(model, str(path), strict=False, device=str(device)),
                                (OSError, SafetensorError))
    if missing or unexpected:
        raise RuntimeError(
            f"{path} does not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )


def load_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The training state of a checkpoint, loaded with ``weights_only=True``."""
    return _load(checkpoint.state, lambda: torch.load(checkpoint.state, map_location="cpu", weights_only=True),
                 (OSError, RuntimeError, EOFError, pickle.UnpicklingError))


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
