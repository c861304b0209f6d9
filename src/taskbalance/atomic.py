"""Atomic, durable file output for every writer of the package: write to a temporary file in the destination folder,
flush it to disk (``fsync``), ``os.replace`` it into place and flush the folder, so that neither a reader nor a crash
(of the process or of the machine) ever sees half a file. A failed write removes its temporary file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteError(OSError):
    """A file or folder could not be written: the message is one line saying what, where and why."""


def describe_os_error(error: OSError) -> str:
    """``strerror`` of an OS error (``No space left on device``), or its text when it has none."""
    if error.strerror:
        return error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's (or a folder's) data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if Path(path).is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically, on error it is removed.

    The parent folder is created if needed. The temporary name keeps ``path``'s suffix, so writers that infer
    the format from the extension (``matplotlib.savefig``, PIL) still work. The file gets the usual permissions
    (0666 minus the umask), not the private 0600 of ``mkstemp`` or of writers that themselves write to a temporary
    file and rename it over the path they are given (``safetensors`` does): the mode is set once the writer is done.
    The file is fsynced before the rename and the folder after it, so a completed write survives a power cut.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))
