"""Files only their owner can read: the run directory is 0700, everything hpilot writes there 0600.

A run directory holds every job's script and environment (the journal), the logs, the
reports, the addresses and the CURVE keys of the run.  On a shared cluster the file
system is shared too, so each of them is created private from the start (``os.open``
with mode 0600, never a ``chmod`` after the fact, which would leave a window), whatever
the user's umask.  Tasks' own output files are the tasks' business: they keep the umask.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dir(path: str) -> str:
    """``mkdir -p`` with the new directories (and ``path`` itself) readable by the owner only."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)  # exist_ok keeps an existing mode; the umask may have narrowed a new one
    return path


def touch(path: str) -> str:
    """Create ``path`` with mode 0600 if it does not exist; an existing one is made 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def open_private(path: str, mode: str = "a", **kw: Any) -> IO[Any]:
    """``open(path, mode)`` for writing, the file created 0600 (or made so)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, mode, **kw)


def write_private(path: str, text: str) -> None:
    """Write ``path`` whole, readable by its owner only (0600 from the start, never widened later).

    An existing file is replaced (rename), not reopened, so its mode can never have been widened."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class WriteFailure:
    """A file hpilot could not write (a full disk, a quota, an I/O error): which, and why.

    Writers keep it instead of raising in the middle of their work (a half-done loop pass
    would lose a task's exit); their owner sees it after the pass and stops the run resumably."""

    path: str
    why: str

    @classmethod
    def of(cls, path: str, err: OSError) -> WriteFailure:
        return cls(path, err.strerror or str(err))

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.why}"
