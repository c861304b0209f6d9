"""A study's worker processes: they never outlive the study, and each attempt at a run keeps its own log.

``study --jobs N`` trains in N spawned worker processes. Should the study's top process die (Ctrl-C, ``kill``,
SIGKILL, an out-of-memory kill), :func:`guard_worker` (the pool's initializer) makes its workers stop within
seconds instead of training on as orphans: the kernel sends the worker SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)`` on Linux), and a thread watching the parent pid does the same on every platform, and
repeats it until the worker is gone. A run that is training takes the SIGTERM as a stop request
(:mod:`taskbalance.training.preemption`): it finishes its step and checkpoints, and the next invocation of the
study resumes it.

:func:`rotate_log` keeps the logs of earlier attempts at a run: ``run.log`` is the newest, ``run.log.1`` the one
before, and so on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: Seconds between two looks at the parent pid (and between two SIGTERMs once it is gone).
POLL_SECONDS = 0.5
#: Logs of earlier attempts kept per run.
KEEP_LOGS = 9


def set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    while True:  # a training run notes the first SIGTERM and stops after its step; then the default handler ends us
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(POLL_SECONDS)


def guard_worker(parent: int) -> None:
    """Make this worker process stop when process ``parent`` (the study) dies; call it first thing in the worker."""
    set_parent_death_signal(signal.SIGTERM)
    threading.Thread(target=_watch_parent, args=(parent,), name="taskbalance-parent-watch", daemon=True).start()


def rotate_log(path: Path, keep: int = KEEP_LOGS) -> None:
    """Move ``path`` (a run's log) to ``path.1``, ``path.1`` to ``path.2``, ..., dropping the ones beyond ``keep``."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    path.with_name(f"{path.name}.{keep}").unlink(missing_ok=True)
    for index in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.is_file():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))
