"""Messages between the governor and a partition (both directions).

They are defined here, in the lower layer, because the partition consumes the
work and produces the reports; the governor imports them.  Iterations travel as
ranges where they can, so a million-iteration job is one message, not a million.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Dict, List, Optional, Sequence, Tuple, Union

from hpilot.launcher.frozen import fast_init
from hpilot.partition.allocator import Request, Slot
from hpilot.partition.spec import Execution, Resources


@fast_init
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


@fast_init
@dataclass(frozen=True)
class Work:
    spec: TaskSpec
    iterations: Sequence[int]  # a range, or a tuple for scattered ones
    now: float = 0.0


@fast_init
@dataclass(frozen=True)
class CancelJob:
    """Cancel a whole job, or only these of its iterations (``job:it`` canceled by a client)."""

    job: str
    reason: str
    now: float = 0.0
    iterations: Optional[Tuple[int, ...]] = None


@fast_init
@dataclass(frozen=True)
class Shutdown:
    reason: str
    now: float = 0.0


# ---- partition -> governor ----


@fast_init
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


@fast_init
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


@fast_init
@dataclass(frozen=True)
class IterationsStarted:
    """The starts of one job in one loop pass, in columns: the governor applies them as a
    batch (its cost grows with batches, not with iterations)."""

    job: str
    iterations: Tuple[int, ...]
    allocations: Tuple[str, ...]
    wds: Tuple[str, ...]
    scheduled: Tuple[float, ...]
    started: Tuple[float, ...]
    pids: Tuple[Optional[int], ...]
    cores: int  # all of the batch's iterations together


@fast_init
@dataclass(frozen=True)
class IterationsSucceeded:
    """The ends of one job in one loop pass that need no more than counting: exit code 0, no
    reason, started here.  Anything else (a failure, a cancel, a start that failed) is an
    exception and travels as its own IterationFinished."""

    job: str
    iterations: Tuple[int, ...]
    allocations: Tuple[str, ...]
    wds: Tuple[str, ...]
    started: Tuple[float, ...]
    finished: Tuple[float, ...]
    cores: int


@fast_init
@dataclass(frozen=True)
class IterationsRan:
    """Iterations of one job that started and succeeded within one loop pass (short tasks, dry
    runs): their start and their success as one batch, so the governor decodes and dispatches
    one record where it took two.  ``begun`` is each success's own start time, None when it is
    ``started`` (as it nearly always is)."""

    job: str
    iterations: Tuple[int, ...]
    allocations: Tuple[str, ...]
    wds: Tuple[str, ...]
    scheduled: Tuple[float, ...]
    started: Tuple[float, ...]
    begun: Optional[Tuple[float, ...]]
    finished: Tuple[float, ...]
    pids: Tuple[Optional[int], ...]
    cores: int

    def as_started(self) -> IterationsStarted:
        return IterationsStarted(self.job, self.iterations, self.allocations, self.wds, self.scheduled,
                                 self.started, self.pids, self.cores)

    def as_succeeded(self) -> IterationsSucceeded:
        begun = self.started if self.begun is None else self.begun
        return IterationsSucceeded(self.job, self.iterations, self.allocations, self.wds, begun, self.finished,
                                   self.cores)


@fast_init
@dataclass(frozen=True)
class IterationsDropped:
    """Iterations that never started: impossible (FAILED) or canceled while queued."""

    job: str
    iterations: Sequence[int]
    reason: str
    when: float
    canceled: bool = False



@fast_init
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


@fast_init
@dataclass(frozen=True)
class Reserve:
    """Set aside ``request`` for iteration ``iteration`` of ``job``: ahead of all queued
    work, and start nothing new here until it is set aside (so it cannot starve)."""

    job: str
    iteration: int
    request: Request
    now: float = 0.0


@fast_init
@dataclass(frozen=True)
class RunReserved:
    """Start the iteration on this partition's reserved cores plus ``foreign`` ones."""

    spec: TaskSpec
    iteration: int
    foreign: Tuple[Slot, ...]
    now: float = 0.0


@fast_init
@dataclass(frozen=True)
class Release:
    """Free what was reserved for the iteration; if it runs here, kill it first."""

    job: str
    iteration: int
    reason: str
    now: float = 0.0


@fast_init
@dataclass(frozen=True)
class Reserved:
    """The cores set aside for a spanning run (partition -> governor)."""

    job: str
    iteration: int
    slots: Tuple[Slot, ...]
    now: float = 0.0


ToPartition = Union[Work, CancelJob, Shutdown, Reserve, RunReserved, Release]
FromPartition = Union[IterationStarted, IterationFinished, IterationsDropped, Reserved, IterationsStarted,
                      IterationsSucceeded, IterationsRan, NodeStatus]
FROM_PARTITION = (IterationStarted, IterationFinished, IterationsDropped, Reserved, IterationsStarted,
                  IterationsSucceeded, IterationsRan, NodeStatus)  # every report, for isinstance


def is_exception(report: FromPartition) -> bool:
    """Anything beyond a plain start or success: a failure, a cancel, a drop, a node's change, a
    reservation.  A partition manager sends these at once; plain progress waits for its report
    period (PartitionRunner.reports_due)."""
    if type(report) is IterationStarted:  # exact types, as in batched: this runs for every report
        return False
    if type(report) is IterationFinished:
        return not report.ok or report.canceled
    return True


def batched(reports: List[FromPartition]) -> List[FromPartition]:
    """One loop pass's reports with each job's starts and plain successes as batches: the
    iterations that both started and succeeded in the pass as one :class:`IterationsRan`,
    then the other starts, then the other successes, then the rest in their order (a start
    always arrives before its iteration's end)."""
    starts: Dict[str, List[IterationStarted]] = {}
    oks: Dict[str, List[IterationFinished]] = {}
    rest: List[FromPartition] = []
    for r in reports:
        if type(r) is IterationStarted:
            starts.setdefault(r.job, []).append(r)
        elif type(r) is IterationFinished and r.ok and not r.canceled and r.stderr_tail is None:
            oks.setdefault(r.job, []).append(r)
        else:
            rest.append(r)
    out: List[FromPartition] = []
    for job, ss in starts.items():
        ss, fs = _ran(job, ss, oks.get(job, []), out)
        oks[job] = fs
        if ss:  # rows to columns in C (zip), not a generator per column
            its, allocs, wds, scheduled, started, pids = zip(*map(_STARTED_ROW, ss))
            out.append(IterationsStarted(job, its, allocs, wds, scheduled, started, pids, sum(map(_CORES, ss))))
    for job, fs in oks.items():
        if fs:
            its, allocs, wds, begun, ended = zip(*map(_SUCCEEDED_ROW, fs))
            out.append(IterationsSucceeded(job, its, allocs, wds, begun, ended, sum(map(_CORES, fs))))
    out.extend(rest)
    return out


def _ran(job: str, ss: List[IterationStarted], fs: List[IterationFinished], out: List[FromPartition]
         ) -> Tuple[List[IterationStarted], List[IterationFinished]]:
    """Append the job's iterations that started and succeeded in this pass as one batch;
    return the starts and the successes left.  A pass that starts an iteration twice (a run
    lost and started again) pairs nothing: its order matters, so it keeps the plain form."""
    if not fs:
        return ss, fs
    at = {s.iteration: s for s in ss}
    if len(at) != len(ss):
        return ss, fs
    pairs = [(at.pop(f.iteration), f) for f in fs if f.iteration in at]
    if not pairs:
        return ss, fs
    started_, ended = zip(*pairs)
    its, allocs, wds, scheduled, started, pids = zip(*map(_STARTED_ROW, started_))
    begun = tuple(f.started for f in ended)
    out.append(IterationsRan(job, its, allocs, wds, scheduled, started, None if begun == started else begun,
                             tuple(f.finished for f in ended), pids, sum(map(_CORES, started_))))
    paired = {f.iteration for f in ended}
    return list(at.values()), [f for f in fs if f.iteration not in paired]


_STARTED_ROW = attrgetter("iteration", "allocation", "wd", "scheduled", "started", "pid")
_SUCCEEDED_ROW = attrgetter("iteration", "allocation", "wd", "started", "finished")
_CORES = attrgetter("cores")
