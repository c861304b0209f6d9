"""The layout of a run directory and its append-only JSON-lines logs.

::

    RUN/config.yaml            resolved config
    RUN/metrics.jsonl          one record per logged step / evaluation ({"step", "kind", ...})
    RUN/diagnostics.jsonl      gradient diagnostics every N steps
    RUN/tb/                    TensorBoard events
    RUN/checkpoints/last.json  -> last-<step>/{model.safetensors,state.pt}: full training state (resume)
    RUN/checkpoints/best.json  -> best-<step>/model.safetensors: weights of the selected model
    RUN/imbalance.json         imbalance summary of the gradient diagnostics
    RUN/results.json           final evaluation (taskbalance.results format); its presence marks the run finished
    RUN/run.lock               held (fcntl.flock) by the process training the run; holds its pid, host and start time

``config.yaml`` marks a folder as a run directory: a run is never written into an existing non-empty folder without
one (a dataset folder, say). A run directory whose run stopped before its first logged step is reused as new.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from taskbalance.jsonlines import JsonLines, write_json
from taskbalance.records import DIAGNOSTICS_FILE, METRICS_FILE, ValidationRecord, read_validation

__all__ = ["JsonLines", "RunDir", "RunDirError", "RunLock", "RunLockedError", "run_dir_for", "write_json"]

LOCK_NAME = "run.lock"
#: The open lock files of the run locks this process holds, by descriptor (see :func:`_let_go_after_fork`).
_held: dict[int, IO[str]] = {}


def _let_go_after_fork() -> None:
    """In a forked child (a DataLoader worker), point the descriptors of the parent's run locks at /dev/null.

    An ``flock`` belongs to the open file, which a fork shares: a child would otherwise keep the run locked after
    its parent died (a torchrun restart then finds the run "in use" by the dead rank 0). The parent's lock stays."""
    if not _held:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    for descriptor in _held:
        os.dup2(null, descriptor)
    os.close(null)
    _held.clear()


os.register_at_fork(after_in_child=_let_go_after_fork)


class RunDirError(ValueError):
    """The output folder cannot hold this run (a name escaping the runs folder, a folder that is not a run's)."""


class RunLockedError(RuntimeError):
    """Another process is training in this run directory; the message says which (pid, host, start time)."""


def run_dir_for(parent: Path, name: str) -> Path:
    """``parent / name`` for a run name that is one plain folder name (no separator, not ``..``, not absolute)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
        raise RunDirError(f"run name {name!r} must be a plain folder name (no '/', '..' or absolute path): "
                          f"runs are written inside {parent}")
    return parent / name


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> JsonLines:
        return JsonLines(self.root / METRICS_FILE)

    @property
    def diagnostics(self) -> JsonLines:
        return JsonLines(self.root / DIAGNOSTICS_FILE)

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def imbalance(self) -> Path:
        return self.root / "imbalance.json"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    def is_finished(self) -> bool:
        """True once the final evaluation has been written."""
        return self.results.is_file()

    def has_checkpoint(self) -> bool:
        """True when a resumable last checkpoint exists (its pointer, or a complete folder whose pointer was lost)."""
        return (self.checkpoints / "last.json").is_file() or any(self.checkpoints.glob("last-*/manifest.json"))

    def has_started(self) -> bool:
        """True when the run in this folder took a step (a checkpoint or a logged record exists)."""
        logged = any(next(iter(log), None) is not None for log in (self.metrics, self.diagnostics))
        return self.config.is_file() and (self.has_checkpoint() or logged)

    def check_output(self) -> None:
        """Refuse a folder that is a file, or is not empty and not a run directory (no ``config.yaml``)."""
        root = self.root
        if root.exists() and not root.is_dir():
            raise RunDirError(f"{root} is a file, not a run directory; choose another --out")
        if root.is_dir() and not self.config.is_file() and any(p.name != LOCK_NAME for p in root.iterdir()):
            raise RunDirError(f"refusing to write a run into {root}: it is not empty and not a run directory "
                              f"(no config.yaml); choose a new or empty --out")

    def lock(self) -> RunLock:
        """Check the folder (:meth:`check_output`), create it and lock it for this process."""
        self.check_output()
        self.root.mkdir(parents=True, exist_ok=True)
        return RunLock.acquire(self.root / LOCK_NAME)

    def best_validation_record(self) -> ValidationRecord | None:
        """The validation record (metrics, primary, higher_is_better) of the run's selected evaluation, or None."""
        best = [record for record in read_validation(self.root) if record.best]
        return best[-1] if best else None


@dataclass
class RunLock:
    """An exclusive ``fcntl.flock`` on a run's lock file, released by :meth:`release` or when the process ends
    (forked children do not keep it)."""

    path: Path
    handle: IO[str] | None = field(default=None, repr=False)

    @classmethod
    def acquire(cls, path: Path) -> RunLock:
        """Lock ``path`` or raise :class:`RunLockedError` naming the holder."""
        handle = open(path, "a+")  # noqa: SIM115 (held for the lock's lifetime, closed by release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(f"{path.parent} is in use by {holder}; wait for that run to end or stop it") from None
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} (started {started})\n")
        handle.flush()
        _held[handle.fileno()] = handle
        return cls(path, handle)

    def release(self) -> None:
        """Unlock (idempotent); the file stays, so that a waiting process locks the same file."""
        if self.handle is not None:
            _held.pop(self.handle.fileno(), None)
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
