"""Every job the service knows, with the state of each of its iterations.

An iterative job keeps one byte per iteration (its state code) and a record only
for iterations that started, plus a short list of ranges that were dropped
(canceled, omitted, impossible) with one timestamp each.  So a job of a million
iterations costs about a megabyte until its iterations actually run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from hpilot.governor.jobspec import JobSpec
from hpilot.governor.states import FINAL_STATES, JobState, check_transition
from hpilot.partition.messages import TaskSpec

_QUEUED = JobState.QUEUED.code


def fmt_time(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")


class IterRun:
    """An iteration that was placed on cores (at least once)."""

    __slots__ = ("allocation", "wd", "scheduled", "started", "finished", "exit_code", "reason",
                 "attempts", "pid", "partition")

    def __init__(self, allocation: str, wd: str, scheduled: float, started: float,
                 finished: Optional[float] = None, exit_code: Optional[int] = None,
                 reason: Optional[str] = None) -> None:
        self.allocation = allocation
        self.wd = wd
        self.scheduled = scheduled
        self.started = started
        self.finished = finished
        self.exit_code = exit_code
        self.reason = reason
        self.attempts = 1
        self.pid: Optional[int] = None
        self.partition: Optional[str] = None  # governor mode: which partition ran it

    @property
    def runtime(self) -> Optional[float]:
        return None if self.finished is None else self.finished - self.started


class Runs(Dict[int, IterRun]):
    """An iteration's runs by index.  Those replayed from a journal stay as the parsed
    journal record until someone reads them: a resume of a million finished iterations
    must not build a million objects nobody may ever look at."""

    __slots__ = ("_compact",)

    def __init__(self) -> None:
        super().__init__()
        self._compact: Optional[Dict[int, Tuple[Any, ...]]] = None

    def add_compact(self, it: int, record: Tuple[Any, ...]) -> None:
        """``record``: (job, it, state, exit_code, start, end, allocation, wd, reason)."""
        if self._compact is None:
            self._compact = {}
        self._compact[it] = record

    def _load(self, it: int) -> Optional[IterRun]:
        r = self._compact.pop(it, None) if self._compact else None
        if r is None:
            return None
        run = IterRun(r[6], r[7], r[4], r[4], r[5], r[3], r[8])
        dict.__setitem__(self, it, run)
        return run

    def _load_all(self) -> None:
        if self._compact:
            for it in list(self._compact):
                self._load(it)

    def __missing__(self, it: int) -> IterRun:
        run = self._load(it)
        if run is None:
            raise KeyError(it)
        return run

    def get(self, it: int, default: Any = None) -> Any:
        run = dict.get(self, it)
        if run is None:
            run = self._load(it)
        return default if run is None else run

    def __setitem__(self, it: int, run: IterRun) -> None:
        if self._compact:
            self._compact.pop(it, None)
        dict.__setitem__(self, it, run)

    def __contains__(self, it: object) -> bool:
        return dict.__contains__(self, it) or bool(self._compact and it in self._compact)

    def __len__(self) -> int:
        return dict.__len__(self) + (len(self._compact) if self._compact else 0)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[int]:
        self._load_all()
        return dict.__iter__(self)

    def keys(self):
        self._load_all()
        return dict.keys(self)

    def values(self):
        self._load_all()
        return dict.values(self)

    def items(self):
        self._load_all()
        return dict.items(self)


@dataclass(frozen=True)
class Drop:
    iterations: Sequence[int]
    state: JobState
    when: float
    reason: str


class JobRecord:
    def __init__(self, spec: JobSpec, task: TaskSpec, now: float, order: int) -> None:
        self.spec = spec
        self.task = task
        self.name = spec.name
        self.order = order  # submission order, for FIFO and listings
        self.submitted = now
        self.state = JobState.QUEUED
        self.history: List[Tuple[JobState, float]] = [(JobState.QUEUED, now)]
        n = task.it_count
        self.it_states = bytearray([_QUEUED]) * n
        self.counts: Counter = Counter({JobState.QUEUED: n})
        self.runs = Runs()
        self.drops: List[Drop] = []
        self.messages: List[str] = []
        self.unmet = 0  # dependencies not yet satisfied
        self.dispatched = False
        self.canceled = False

    # ---- iterations ----

    @property
    def total(self) -> int:
        return self.task.it_count

    def it_state(self, it: int) -> JobState:
        return JobState.from_code(self.it_states[it - self.task.it_start])

    def set_it_state(self, it: int, new: JobState) -> JobState:
        idx = it - self.task.it_start
        old = JobState.from_code(self.it_states[idx])
        if old is new:
            return old
        check_transition(f"{self.task.task_name(it)}", old, new)
        self.it_states[idx] = new.code
        self.counts[old] -= 1
        self.counts[new] += 1
        return old

    def iterations(self) -> range:
        return range(self.task.it_start, self.task.it_start + self.task.it_count)

    @property
    def finished_count(self) -> int:
        return sum(self.counts[s] for s in FINAL_STATES)

    @property
    def all_final(self) -> bool:
        return self.finished_count == self.total

    def pending(self) -> Sequence[int]:
        """The iterations still to run: the whole range, or (after a resume) those left."""
        if self.counts[JobState.QUEUED] == self.total:
            return self.iterations()
        return tuple(self.queued_iterations())

    def queued_iterations(self) -> Iterator[int]:
        start = self.task.it_start
        for idx, code in enumerate(self.it_states):
            if code == _QUEUED:
                yield start + idx

    # ---- the job's own state ----

    def set_state(self, new: JobState, now: float, message: Optional[str] = None) -> bool:
        if new is self.state:
            return False
        check_transition(f"job {self.name}", self.state, new)
        self.state = new
        self.history.append((new, now))
        if message:
            self.messages.append(message)
        return True

    def summary_state(self) -> JobState:
        """The job state its iterations imply once they are all final."""
        c = self.counts
        if self.canceled:  # definitive: its dependants were omitted when the cancel came
            return JobState.CANCELED
        if c[JobState.SUCCEED] == self.total:
            return JobState.SUCCEED
        if c[JobState.OMITTED] == self.total:
            return JobState.OMITTED
        if c[JobState.FAILED]:
            return JobState.FAILED
        if c[JobState.CANCELED]:
            return JobState.CANCELED
        return JobState.FAILED

    @property
    def runtime(self) -> Optional[float]:
        if not self.runs:
            return None
        ends = [r.finished for r in self.runs.values() if r.finished is not None]
        if not ends:
            return None
        return max(ends) - min(r.started for r in self.runs.values())

    def history_text(self) -> str:
        return "".join(f"\n{fmt_time(ts)}: {st.value}" for st, ts in self.history)

    def it_history(self, it: int) -> List[Tuple[JobState, float]]:
        hist: List[Tuple[JobState, float]] = [(JobState.QUEUED, self.submitted)]
        run = self.runs.get(it)
        state = self.it_state(it)
        if run is not None:
            hist.append((JobState.SCHEDULED, run.scheduled))
            hist.append((JobState.EXECUTING, run.started))
            if run.finished is not None and state.is_final:
                hist.append((state, run.finished))
            return hist
        for drop in self.drops:
            if it in drop.iterations:
                hist.append((drop.state, drop.when))
                break
        return hist


class Registry:
    """Jobs by name, in submission order."""

    def __init__(self) -> None:
        self.jobs: Dict[str, JobRecord] = {}
        self._order = 0

    def next_order(self) -> int:
        self._order += 1
        return self._order

    def __contains__(self, name: str) -> bool:
        return name in self.jobs

    def get(self, name: str) -> Optional[JobRecord]:
        return self.jobs.get(name)

    def add(self, rec: JobRecord) -> None:
        self.jobs[rec.name] = rec

    def remove(self, name: str) -> None:
        del self.jobs[name]

    def __iter__(self) -> Iterator[JobRecord]:
        return iter(self.jobs.values())

    def __len__(self) -> int:
        return len(self.jobs)

    def counts(self) -> Counter:
        return Counter(j.state for j in self.jobs.values())
