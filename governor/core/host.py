"""The few facts of the machine the governor core needs, behind an interface.

The core decides things that depend on the host: a submit naming a program that is not
there is refused, a job's working directory must be creatable, the submit-time
variables carry the host's local date.  It reads none of that itself (no file system,
no clock, no sockets in the core): the service gives it a :class:`Host` that asks the
machine (``service.host.SystemHost``), core tests give it a fake, and a core made
without one (``NoHost``) takes every program and directory as present.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

# what a path is, for the submit checks
MISSING, DIRECTORY, EXECUTABLE, FILE = "missing", "directory", "executable", "file"


class Host(Protocol):
    def hostname(self) -> str:
        """This machine's name (``status`` shows it)."""

    def local_time(self, t: float) -> Tuple[int, int, int, int, int, int]:
        """``t`` (seconds since the epoch) as local (year, month, day, hour, minute, second)."""

    def which(self, program: str, path: Optional[str]) -> Optional[str]:
        """Where ``program`` is found in ``path`` (None: our own PATH), or None."""

    def kind(self, path: str) -> str:
        """MISSING, DIRECTORY, EXECUTABLE or FILE."""

    def make_dir(self, path: str) -> Optional[str]:
        """Create ``path`` (and its parents) unless it exists; None if it is then a writable
        directory, else why not."""

    def output_problems(self, paths: Sequence[Tuple[str, bool]]) -> List[Optional[str]]:
        """For each (path, may_be_made): why a task could not write its output there (None: it
        can).  A ``\\0`` in a path stands for a variable (that part differs per iteration);
        ``may_be_made``: a missing directory is no problem (an earlier job may make it)."""

    def unique_id(self) -> str:
        """A new id, unique across runs and hosts (QCG-PilotJob's ``${uniq}`` of a submit)."""

    def process_facts(self) -> Dict[str, Any]:
        """What QCG-PilotJob's ``status`` says of the service process: Account, PythonVersion,
        Python, Platform."""


class NoHost:
    """Every program and directory is there; time is UTC. For cores that check nothing
    against a machine (a resume's dry run, simulations)."""

    def hostname(self) -> str:
        return "localhost"

    def local_time(self, t: float) -> Tuple[int, int, int, int, int, int]:
        days, rest = divmod(int(t), 86400)
        return (*_civil(days), rest // 3600, rest % 3600 // 60, rest % 60)

    def which(self, program: str, path: Optional[str]) -> Optional[str]:
        return program

    def kind(self, path: str) -> str:
        return EXECUTABLE

    def make_dir(self, path: str) -> Optional[str]:
        return None

    def output_problems(self, paths: Sequence[Tuple[str, bool]]) -> List[Optional[str]]:
        return [None] * len(paths)

    def unique_id(self) -> str:
        self._ids = getattr(self, "_ids", 0) + 1
        return f"00000000-0000-4000-8000-{self._ids:012x}"

    def process_facts(self) -> Dict[str, Any]:
        return {"Account": "nobody", "PythonVersion": "", "Python": "", "Platform": ""}


def _civil(days: int) -> Tuple[int, int, int]:
    """Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d
