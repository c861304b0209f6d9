"""How every command fails: one line on stderr, and the exit status of the failure's class.

=====  ======================================================================================================
 0     success
 1     error: the command could not do its job (a bad config, an unknown name or option, missing or invalid
       input files, a check that found problems, a write failure, a diverged run, an unfinished study)
 2     usage: the command line itself is wrong (click's own errors: a missing argument, a malformed option
       value; also a command given what another command takes)
 75    stopped by a preemption signal after a verified checkpoint (``--resume`` finishes the run)
 130   interrupted (Ctrl-C)
=====  ======================================================================================================

Imports nothing from the package (the commands import their libraries lazily, so ``--help`` stays fast).
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

#: The command could not do its job.
ERROR = 1
#: The command line is wrong (click exits with 2 for its own usage errors).
USAGE = 2
#: Stopped after a checkpoint by a preemption signal (``taskbalance.training.preemption.PREEMPTED_EXIT_CODE``).
PREEMPTED = 75
#: Interrupted from the keyboard (128 + SIGINT).
INTERRUPTED = 130

EXIT_STATUS_HELP = (f"Exit status: 0 success, {ERROR} error (bad config, name or input; a check that found problems), "
                    f"{USAGE} usage (a wrong command line), {PREEMPTED} stopped by a preemption signal after a "
                    f"checkpoint, {INTERRUPTED} interrupted.")


def fail(message: object, code: int = ERROR, label: str = "error") -> typer.Exit:
    """Print ``label: message`` on stderr, unwrapped, and return the ``typer.Exit`` to raise (``raise fail(...)``).

    ``message`` is printed as plain text (an exception prints its message; square brackets are not markup).
    """
    color = "bold red" if code in (ERROR, USAGE) else "yellow"
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[{color}]{label}:[/{color}] {escape(str(message))}")
    return typer.Exit(code)
