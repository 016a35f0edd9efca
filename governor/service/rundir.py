"""The run directory ``<wd>/.hpilot/<run-id>/`` that every run leaves behind.

Run ids sort by start time, and ``.hpilot/latest`` points at the newest, so that
``hpilot report``, ``--resume`` and the client commands can find "the last run
here" without the user copying ids around.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Optional

from hpilot.launcher.private import make_dir, touch

AUX = ".hpilot"


class RunDir:
    def __init__(self, wd: str, run_id: Optional[str] = None) -> None:
        host = socket.gethostname().split(".")[0] or "host"
        self.name = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{host}-{os.getpid()}"
        self.path_str = os.path.join(os.path.abspath(wd), AUX, self.name)
        make_dir(os.path.dirname(self.path_str))
        make_dir(self.path_str)  # 0700: the journal holds every job's script and environment
        self._point_latest()
        # per-run prefix of ${uniq}: unique across runs sharing one wd
        self.uniq = f"{os.getpid():x}{int(time.time()) & 0xFFFFFF:06x}-"

    @classmethod
    def existing(cls, path: str) -> RunDir:
        """An earlier run's directory, carried on by a resume."""
        self = cls.__new__(cls)
        self.path_str = os.path.abspath(path)
        self.name = os.path.basename(self.path_str)
        self.uniq = f"{os.getpid():x}{int(time.time()) & 0xFFFFFF:06x}-"
        self._point_latest()
        return self

    def _point_latest(self) -> None:
        """``.hpilot/latest`` -> this run, replaced atomically."""
        link = os.path.join(os.path.dirname(self.path_str), "latest")
        try:
            tmp = f"{link}.{os.getpid()}"
            os.symlink(self.name, tmp)
            os.replace(tmp, link)
        except OSError:
            pass  # a file system without symlinks: 'latest' is a convenience only

    def path(self, name: str) -> str:
        return name if os.path.isabs(name) else os.path.join(self.path_str, name)


class LogFile(logging.FileHandler):
    """service.log; a full disk makes it fall silent (said once on stderr), never a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        import sys

        if not getattr(self, "_silent", False):
            self._silent = True
            err = sys.exc_info()[1]
            why = err.strerror if isinstance(err, OSError) and err.strerror else err
            print(f"hpilot: cannot write {self.baseFilename}: {why} (service.log is silent from here on)",
                  file=sys.stderr, flush=True)

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(self, "_silent", False):
            super().emit(record)


def setup_logging(run_dir: RunDir, level: str) -> logging.Handler:
    handler = LogFile(touch(run_dir.path("service.log")), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("hpilot")
    root.setLevel(logging.NOTSET if level == "notset" else getattr(logging, level.upper()))
    root.addHandler(handler)
    root.propagate = False
    return handler
