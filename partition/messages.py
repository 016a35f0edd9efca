"""Messages between the governor and a partition (both directions).

They are defined here, in the lower layer, because the partition consumes the
work and produces the reports; the governor imports them.  Iterations travel as
ranges where they can, so a million-iteration job is one message, not a million.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

from hpilot.partition.allocator import Request, Slot
from hpilot.partition.spec import Execution, Resources


@dataclass(frozen=True)
class TaskSpec:
    """How to run every iteration of one job (submit-time variables already filled)."""

    job: str
    execution: Execution
    resources: Resources
    iterative: bool
    it_start: int = 0
    it_count: int = 1
    it_values: Optional[Tuple[str, ...]] = None

    def task_name(self, it: int) -> str:
        return f"{self.job}:{it}" if self.iterative else self.job

    def it_value(self, it: int) -> str:
        return self.it_values[it - self.it_start] if self.it_values is not None else str(it)


# ---- governor -> partition ----


@dataclass(frozen=True)
class Work:
    spec: TaskSpec
    iterations: Sequence[int]  # a range, or a tuple for scattered ones
    now: float = 0.0


@dataclass(frozen=True)
class CancelJob:
    """Cancel a whole job, or only these of its iterations (``job:it`` canceled by a client)."""

    job: str
    reason: str
    now: float = 0.0
    iterations: Optional[Tuple[int, ...]] = None


@dataclass(frozen=True)
class Shutdown:
    reason: str
    now: float = 0.0


# ---- partition -> governor ----


@dataclass(frozen=True)
class IterationStarted:
    job: str
    iteration: int
    allocation: str
    wd: str
    scheduled: float
    started: float
    cores: int = 1
    pid: Optional[int] = None


@dataclass(frozen=True)
class IterationFinished:
    job: str
    iteration: int
    exit_code: int
    started: float
    finished: float
    allocation: str
    wd: str
    cores: int = 1
    reason: Optional[str] = None  # why it did not end by itself (wall time, cancel, spawn)
    canceled: bool = False
    stderr_tail: Optional[str] = None  # a failed task's last stderr lines (streamed output only)
    # ended by its node, agent or partition (lost, or could not start there), never by its own
    # doing: the governor runs it again (``reason`` says what happened)
    lost: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.reason is None and not self.lost


@dataclass(frozen=True)
class IterationsDropped:
    """Iterations that never started: impossible (FAILED) or canceled while queued."""

    job: str
    iterations: Sequence[int]
    reason: str
    when: float
    canceled: bool = False



@dataclass(frozen=True)
class NodeStatus:
    """A node of the partition went out of service (its agent died or is unreachable, tasks
    cannot start there) or came back: ``reason`` says why, for ``resources`` and ``status``."""

    node: str
    up: bool
    reason: str
    now: float = 0.0


# ---- a run that spans partitions (more cores or nodes than any one partition has) ----
# The governor gathers its cores one partition at a time with Reserve; each answers
# Reserved with the exact cores it set aside; then the first (the leader) gets RunReserved
# and starts the run on its own reserved cores plus the others' (a host file spanning
# them, as the execution models do for any multi-node run).  When the run ends, or is
# abandoned, every partition gets Release and frees what it set aside.


@dataclass(frozen=True)
class Reserve:
    """Set aside ``request`` for iteration ``iteration`` of ``job``: ahead of all queued
    work, and start nothing new here until it is set aside (so it cannot starve)."""

    job: str
    iteration: int
    request: Request
    now: float = 0.0


@dataclass(frozen=True)
class RunReserved:
    """Start the iteration on this partition's reserved cores plus ``foreign`` ones."""

    spec: TaskSpec
    iteration: int
    foreign: Tuple[Slot, ...]
    now: float = 0.0


@dataclass(frozen=True)
class Release:
    """Free what was reserved for the iteration; if it runs here, kill it first."""

    job: str
    iteration: int
    reason: str
    now: float = 0.0


@dataclass(frozen=True)
class Reserved:
    """The cores set aside for a spanning run (partition -> governor)."""

    job: str
    iteration: int
    slots: Tuple[Slot, ...]
    now: float = 0.0


ToPartition = Union[Work, CancelJob, Shutdown, Reserve, RunReserved, Release]
FromPartition = Union[IterationStarted, IterationFinished, IterationsDropped, Reserved, NodeStatus]
