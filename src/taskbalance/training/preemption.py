"""Stopping a run cleanly on a signal: a cluster's preemption or requeue notice (SLURM sends SIGTERM), a user's
SIGUSR1.

While a run trains, the signals of ``stop_signals`` (config; default SIGTERM and SIGUSR1) only note that a stop was
asked for. The trainer finishes the step in progress, writes and verifies a checkpoint at that step and raises
:class:`Preempted`; ``taskbalance train`` then exits with :data:`PREEMPTED_EXIT_CODE`, and ``--resume`` (or
``--resume-if-exists``) continues from that step exactly. Under several processes the stop is agreed on (a max
all-reduce of the flag each step), so every process stops after the same step.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

#: The exit status of ``taskbalance train`` stopped by a signal after checkpointing (``EX_TEMPFAIL``: try again).
PREEMPTED_EXIT_CODE = 75
DEFAULT_STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
_UNCATCHABLE = {"SIGKILL", "SIGSTOP"}


def signal_number(name: str) -> signal.Signals:
    """The signal called ``name`` (``SIGTERM``, ``TERM``); ValueError naming the choices when there is none."""
    full = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    if full in _UNCATCHABLE or full not in signal.Signals.__members__:
        catchable = sorted(s for s in signal.Signals.__members__ if s not in _UNCATCHABLE and not s.startswith("SIG_"))
        raise ValueError(f"{name!r} is not a signal a run can catch; choose from {', '.join(catchable)}")
    return signal.Signals[full]


class Preempted(BaseException):
    """A run stopped by a signal after writing a verified checkpoint at ``step`` (a BaseException, like
    KeyboardInterrupt, so that code catching a run's errors does not take a stop for a failure)."""

    def __init__(self, signum: int | None, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name if signum is not None else "another process's signal"
        super().__init__(f"stopped by {name} after step {step}; checkpoint {checkpoint} written and verified")


class StopRequest:
    """While entered, the given signals only set :attr:`received`; the previous handlers come back on exit.

    Outside the main thread (where Python cannot set handlers) it does nothing and the signals keep their handlers.
    """

    def __init__(self, signals: Sequence[int]) -> None:
        self.signals = list(dict.fromkeys(signals))
        self.received: int | None = None
        # None: a handler not installed from Python, which Python cannot put back (signal.getsignal)
        self._previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous.clear()
