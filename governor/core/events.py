"""What goes into the governor core (events) and what comes out (actions).

Every change of the core's state is caused by one of these events, fed to
``GovernorCore.handle`` by the shell: a client's request, a partition's report, a
partition joining or going, or a record of the journal being replayed.  The core
answers with actions only; the shell carries them out (sockets, files, processes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from hpilot.launcher.frozen import fast_init
from hpilot.partition.messages import FromPartition, ToPartition

# ---- events: the outside world ----


@fast_init
@dataclass(frozen=True)
class ClientRequest:
    payload: Any
    now: float
    reply_to: Any = None


@fast_init
@dataclass(frozen=True)
class FromPart:
    partition: str
    message: FromPartition


@fast_init
@dataclass(frozen=True)
class PartitionJoined:
    """A partition registered. ``credit`` None: the Router meters its work by its measured
    rate; a number: it may hold that many cores' worth (the in-process partition of a single
    manager takes whole ranges, so it gets more than any job can have)."""

    name: str
    nodes: Tuple[Tuple[str, int], ...]
    tags: Tuple[str, ...] = ()
    now: float = 0.0
    credit: Optional[int] = None


@fast_init
@dataclass(frozen=True)
class PartitionGone:
    """Lost (``clean=False``: its unfinished iterations are re-queued) or left after draining."""

    name: str
    reason: str
    clean: bool
    now: float = 0.0


@fast_init
@dataclass(frozen=True)
class FenceLifted:
    """The tasks of a lost partition are known dead now (its process exited and its guard's
    bound passed, or the time a live partition takes to kill its tasks once it lost its
    governor has passed): what it held may run again (fencing.py).  The shell's timer: the
    core has no clock."""

    name: str
    now: float = 0.0


@fast_init
@dataclass(frozen=True)
class PartitionDraining:
    name: str


@fast_init
@dataclass(frozen=True)
class Settled:
    """Every partition the governor started has registered (or will never): jobs larger
    than every partition can now be failed instead of waiting for a bigger one."""


@fast_init
@dataclass(frozen=True)
class Interrupt:
    """The run must stop, resumably: a signal (SIGTERM, SIGINT, Slurm's ``--signal``), the
    allocation's end coming (``--stop-before``), a disk that cannot be written.  Nothing new
    starts; what runs is killed; every iteration not final ends INTERRUPTED, which the next
    resume runs again.  ``reason`` says it all: "interrupted by SIGTERM"."""

    reason: str
    now: float = 0.0


# ---- events: a journal being replayed (resume) ----


@fast_init
@dataclass(frozen=True)
class ReplaySubmit:
    time: float
    values: Dict[str, str]
    jobs: Sequence[Dict[str, Any]]


@fast_init
@dataclass(frozen=True)
class ReplayCancel:
    time: float
    jobs: Sequence[str]
    iterations: Optional[Sequence[int]] = None  # single iterations ("job:it") when only some


@fast_init
@dataclass(frozen=True)
class ReplayRemove:
    time: float
    jobs: Sequence[str]


@fast_init
@dataclass(frozen=True)
class ReplayDrop:
    job: str
    iterations: Sequence[int]
    state: str
    reason: str
    time: float


@dataclass(frozen=True)
class ReplayFinished:
    """Finished-iteration records, many at once (a million must replay in seconds): each is
    the journal's tuple (job, iteration, state, exit code, start, end, allocation, wd, reason)."""

    records: Sequence[Tuple[Any, ...]]
    tails: Dict[Tuple[Any, Any], str] = field(default_factory=dict)  # (job, it) -> last stderr lines


@fast_init
@dataclass(frozen=True)
class ReplayDone:
    """The journal is read: finish what it finished, link and dispatch the rest."""

    now: float


Replayed = Union[ReplaySubmit, ReplayCancel, ReplayRemove, ReplayDrop, ReplayFinished, ReplayDone]
Event = Union[ClientRequest, FromPart, PartitionJoined, PartitionGone, PartitionDraining, Settled, Interrupt,
              FenceLifted, Replayed]

# ---- actions ----


@fast_init
@dataclass(frozen=True)
class Reply:
    reply_to: Any
    response: Dict[str, Any]


@fast_init
@dataclass(frozen=True)
class SendToPartition:
    partition: str
    message: ToPartition


@fast_init
@dataclass(frozen=True)
class JobDone:
    job: Any  # a registry.JobRecord (Any: the registry imports nothing of this module)


@fast_init
@dataclass(frozen=True)
class FinishService:
    reason: str


@fast_init
@dataclass(frozen=True)
class Record:
    """A journal record (already encoded): the shell appends it to the run's journal."""

    data: bytes


@fast_init
@dataclass(frozen=True)
class StateEvent:
    """A job or iteration state change, for subscribers (only made when someone listens)."""

    event: Dict[str, Any]


Action = Union[Reply, SendToPartition, JobDone, FinishService, StateEvent, Record]
