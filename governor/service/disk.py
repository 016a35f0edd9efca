"""A full or failing disk stops the run resumably, saying which file and why.

Every file a run writes as it goes (the journal, ``jobs.report``, the tasks' output) keeps
its first failed write (a :class:`~hpilot.launcher.private.WriteFailure`) instead of raising
in the middle of a loop pass, where it would lose a task's exit.  The service looks after
each pass (:func:`first_failure`) and stops the run as on SIGTERM: nothing new starts, the
running tasks are killed and left to the resume.  To have room for its last words
(``final_status``, the report's last line) on a full disk, a run keeps a small
:class:`Reserve` in its run directory, given back the moment a write fails.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Optional

from hpilot.launcher.private import FILE_MODE, WriteFailure

RESERVE = "reserve"
RESERVE_BYTES = 1 << 20


class Reserve:
    def __init__(self, path: str, size: int = RESERVE_BYTES) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            self.held = True
        except OSError:  # already short of room (or no fallocate here): nothing is set aside
            self.held = False

    def release(self) -> None:
        if self.held:
            self.held = False
            with contextlib.suppress(OSError):
                os.remove(self.path)


def first_failure(*writers: Any) -> Optional[WriteFailure]:
    """The first write failure of these (a journal, a report, a launcher: anything with a
    ``failed`` or ``write_failure``), or None."""
    for w in writers:
        if w is None:
            continue
        failed = getattr(w, "failed", None) or getattr(w, "write_failure", None)
        if failed is not None:
            return failed
    return None
