"""Workers of a ``torchrun`` job: a store of their own attempt, and no worker left when torchrun dies.

**One store for all restarts.** torchrun's agent hosts one TCPStore at ``MASTER_ADDR:MASTER_PORT`` for the whole
job (``TORCHELASTIC_USE_AGENT_STORE=True``), and ``init_process_group`` uses it with the same key names on every
attempt: the keys of the attempt before a ``--max-restarts`` restart are still there when the restarted workers
start. A restarted rank can then read a dead rank's Gloo address (``Connection refused``) or NCCL id, or pass the
start-up barrier on the old attempt's count without its peers (pytorch/pytorch#135712; torch's attempt prefix was
dropped because ``TORCHELASTIC_RESTART_COUNT`` differs between nodes: a node restarted for another node's failure
does not count it). :func:`attempt_store` gives the process group a key prefix that only this attempt's workers
know: a fresh random id of rank 0's, handed to every other rank in a three-message handshake that no key of an
earlier attempt can complete.

**No orphans.** torchrun starts each worker in a session of its own, so a torchrun killed by SIGKILL (an
out-of-memory kill, a scheduler's) leaves its workers training on. :func:`guard_against_agent_death` stops a
worker when its agent dies, as :mod:`taskbalance.training.workers` does for a study's workers: the worker gets
SIGTERM, which a training run takes as a stop request (it checkpoints after its step and exits).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta

import torch.distributed as dist

from taskbalance.training.workers import guard_worker

#: Seconds between two looks at the handshake keys.
POLL_SECONDS = 0.05
HANDSHAKE = "taskbalance/attempt"
_guarded = False


def under_torchrun() -> bool:
    """Whether this process is a worker started by torchrun's elastic agent."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def uses_agent_store() -> bool:
    """Whether torchrun's agent hosts the job's store at ``MASTER_ADDR:MASTER_PORT`` (shared by all attempts)."""
    return under_torchrun() and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)


def attempt_store(rank: int, world_size: int, timeout: timedelta) -> dist.Store:
    """The agent's store under a key prefix of this attempt only (see the module docstring)."""
    agent = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size=world_size,
                          is_master=False, timeout=timeout)
    attempt = agree_on_attempt(agent, rank, world_size, timeout)
    return dist.PrefixStore(f"{HANDSHAKE}/{attempt}", agent)


def agree_on_attempt(store: dist.Store, rank: int, world_size: int, timeout: timedelta) -> str:
    """An id that rank 0 draws and every rank of this attempt learns, whatever earlier attempts left in ``store``.

    Rank r > 0 writes a fresh ``hello/r``; rank 0 answers every ``hello/r`` it reads with ``ack/r`` = (that hello,
    its id); rank r takes the id from the ack that echoes *its* hello and confirms with ``confirm/r`` = id; rank 0
    waits until every ``confirm/r`` holds its id. A stale hello only earns an ack that no live rank takes, and a
    stale ack or confirmation carries an old hello or id, so neither side mistakes an old key for a new one."""
    deadline = time.monotonic() + timeout.total_seconds()

    def key(name: str, of: int) -> str:
        return f"{HANDSHAKE}/{name}/{of}"

    def expired(what: str) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {rank} of {world_size}: {what} within {timeout}; is every rank of the job "
                               "running?")
        time.sleep(POLL_SECONDS)

    if rank == 0:
        attempt = uuid.uuid4().hex
        answered: dict[int, str] = {}
        waiting = set(range(1, world_size))
        while waiting:
            for other in sorted(waiting):
                if store.check([key("confirm", other)]) and store.get(key("confirm", other)).decode() == attempt:
                    waiting.discard(other)
                elif store.check([key("hello", other)]):
                    hello = store.get(key("hello", other)).decode()
                    if answered.get(other) != hello:
                        store.set(key("ack", other), f"{hello} {attempt}")
                        answered[other] = hello
            if waiting:
                expired(f"ranks {sorted(waiting)} did not join")
        return attempt
    hello = uuid.uuid4().hex
    store.set(key("hello", rank), hello)
    while True:
        if store.check([key("ack", rank)]):
            echoed, _, attempt = store.get(key("ack", rank)).decode().partition(" ")
            if echoed == hello:
                store.set(key("confirm", rank), attempt)
                return attempt
        expired("rank 0 did not answer")


def guard_against_agent_death() -> None:
    """Under torchrun, make this worker stop (SIGTERM) when its parent, the agent, dies; once per process."""
    global _guarded
    if under_torchrun() and not _guarded:
        guard_worker(os.getppid())
        _guarded = True
