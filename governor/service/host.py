"""The governor core's :class:`~hpilot.governor.core.host.Host`, answered by this machine."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hpilot.governor.core.host import DIRECTORY, EXECUTABLE, FILE, MISSING


class SystemHost:
    def __init__(self) -> None:
        self._hostname = socket.gethostname()
        self._facts = {"Account": _account(), "PythonVersion": sys.version.replace("\n", " "),
                       "Python": sys.executable, "Platform": sys.platform}

    def hostname(self) -> str:
        return self._hostname

    def local_time(self, t: float) -> Tuple[int, int, int, int, int, int]:
        lt = time.localtime(t)
        return lt.tm_year, lt.tm_mon, lt.tm_mday, lt.tm_hour, lt.tm_min, lt.tm_sec

    def which(self, program: str, path: Optional[str]) -> Optional[str]:
        return shutil.which(program, path=path or os.environ.get("PATH", os.defpath))

    def kind(self, path: str) -> str:
        if not os.path.exists(path):
            return MISSING
        if os.path.isdir(path):
            return DIRECTORY
        return EXECUTABLE if os.access(path, os.X_OK) else FILE

    def make_dir(self, path: str) -> Optional[str]:
        # Creating it is the only honest test (os.access says yes to root even on /proc);
        # the job would create it before starting anyway.
        try:
            os.makedirs(path, exist_ok=True)
        except (OSError, ValueError) as e:
            return f"cannot create {path}: {e.strerror if isinstance(e, OSError) else e}"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        return None

    def output_problems(self, paths: Sequence[Tuple[str, bool]]) -> List[Optional[str]]:
        probed: Dict[str, Optional[str]] = {}  # directory -> why no file can be made there (one probe each)
        return [_output_problem(path, may_be_made, probed) for path, may_be_made in paths]

    def unique_id(self) -> str:
        return str(uuid.uuid4())

    def process_facts(self) -> Dict[str, Any]:
        return dict(self._facts)


def _output_problem(path: str, may_be_made: bool, probed: Dict[str, Optional[str]]) -> Optional[str]:
    parent = os.path.dirname(path)
    if "\0" in parent:
        return None  # the directory differs per iteration
    if "\0" not in path and os.path.isdir(path):
        return f"{path} is a directory"
    if not os.path.isdir(parent):
        if may_be_made:
            return None
        return f"no such directory: {parent}" if not os.path.exists(parent) else f"{parent} is not a directory"
    if parent not in probed:
        probed[parent] = _unwritable(parent)
    if probed[parent] is not None:
        return probed[parent]
    if "\0" not in path and os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None


def _unwritable(directory: str) -> Optional[str]:
    """Creating a file is the only honest test (os.access says yes to root on a read-only mount)."""
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".hpilot-probe-")
    except OSError as e:
        return f"cannot write in {directory}: {e.strerror}"
    os.close(fd)
    os.unlink(probe)
    return None


def _account() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container)
        return str(os.getuid())
