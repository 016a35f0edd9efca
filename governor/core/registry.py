"""Every job the service knows, with the state of each of its iterations.

An iterative job keeps one byte per iteration (its state code), its runs in columns
(:mod:`runs`: 48 bytes per iteration once one has run), and a short list of ranges
that were dropped (canceled, omitted, impossible) with one timestamp each.  So a job
of a million iterations costs about a megabyte until its iterations actually run.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from hpilot.governor.core.jobspec import JobSpec
from hpilot.governor.core.runs import Runs, runs_in
from hpilot.governor.core.states import FINAL_STATES, JobState, check_transition
from hpilot.partition.messages import TaskSpec

_QUEUED = JobState.QUEUED.code
_EXECUTING = JobState.EXECUTING.code
_SUCCEED = JobState.SUCCEED.code
_FINAL_CODES = frozenset(s.code for s in FINAL_STATES)
_EXECUTING_RUN = bytes((_EXECUTING,))
_SUCCEED_RUN = bytes((_SUCCEED,))


def _slices(its: Sequence[int], first: int, count: int) -> Optional[List[Tuple[int, int]]]:
    """``its`` as slices of a job's state bytes, when it is a few runs (:func:`runs_in`)."""
    pieces = runs_in(its, first, count)
    return None if pieces is None else [(its[i] - first, its[i] - first + j - i) for i, j in pieces]


def _codes(states: bytearray, slices: List[Tuple[int, int]]) -> Dict[int, int]:
    """How many iterations of the ``states[lo:hi]`` slices are in each state (its code)."""
    moved: Dict[int, int] = {}
    for lo, hi in slices:
        seg = states[lo:hi]
        for code in set(seg):
            moved[code] = moved.get(code, 0) + seg.count(code)
    return moved


_FINAL_BY_VALUE = {s.value: s for s in FINAL_STATES}


def fmt_time(ts: float) -> str:
    """``datetime.fromtimestamp(ts)`` as text, to the microsecond (rounded as it rounds).

    The governor formats a time for every job and iteration it reports, and most fall in
    the same second: the date and time of each second is formatted once, its microseconds
    each time."""
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    second = int(whole)
    head = _SECONDS.get(second)
    if head is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        head = _SECONDS[second] = datetime.fromtimestamp(second).strftime("%Y-%m-%d %H:%M:%S.")
    return f"{head}{us:06d}"


_SECONDS: Dict[int, str] = {}


MAX_FAILURES = 20  # per job: the first failed iterations, with their exit and last stderr lines


@dataclass(frozen=True)
class Failure:
    """A failed iteration: why, and what it last wrote on stderr (when its output was streamed)."""

    iteration: int
    exit_code: Optional[int]
    reason: Optional[str]
    stderr: Optional[str] = None


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
        self.runs = Runs(task.it_start, n)
        self.drops: List[Drop] = []
        self.messages: List[str] = []
        self.failures: List[Failure] = []  # the first MAX_FAILURES failed iterations
        self.unmet = 0  # dependencies not yet satisfied
        self.dispatched = False
        self.canceled = False
        self.partial_cancel = False  # some iterations canceled one by one ("job:it")
        # per-iteration dependencies: iterations not yet sent -> predecessors not yet done
        self.it_unmet: Optional[Dict[int, int]] = None
        # CANCELED iterations that never started (see counts.py: "not started", not "canceled")
        self.canceled_unstarted = 0

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
        if new is JobState.CANCELED and (old is JobState.QUEUED or old is JobState.SCHEDULED):
            self.canceled_unstarted += 1
        self.counts[old] -= 1
        self.counts[new] += 1
        return old

    def start_many(self, its: Sequence[int]) -> None:
        """Iterations start (QUEUED or SCHEDULED -> EXECUTING): a batch, its counts moved once."""
        states, first = self.it_states, self.task.it_start
        slices = _slices(its, first, len(states))
        if slices is not None:  # the usual batch, runs of iterations: counted and written in C
            moved = _codes(states, slices)
            moved.pop(_EXECUTING, None)
            for lo, hi in slices:
                states[lo:hi] = _EXECUTING_RUN * (hi - lo)
            self._moved(moved, JobState.EXECUTING, its)
            return
        moved = {}
        for it in its:
            idx = it - first
            code = states[idx]
            if code != _EXECUTING:
                moved[code] = moved.get(code, 0) + 1
                states[idx] = _EXECUTING
        self._moved(moved, JobState.EXECUTING, its)

    def succeed_many(self, its: Sequence[int]) -> Sequence[int]:
        """Running iterations ended well (-> SUCCEED), a batch; an iteration already final keeps
        its end (a repeated report).  Returns the iterations that changed."""
        states, first = self.it_states, self.task.it_start
        slices = _slices(its, first, len(states))
        if slices is not None:
            moved = _codes(states, slices)
            if _FINAL_CODES.isdisjoint(moved):  # none final yet: the whole batch changes, in C
                for lo, hi in slices:
                    states[lo:hi] = _SUCCEED_RUN * (hi - lo)
                self._moved(moved, JobState.SUCCEED, its)
                return its
        moved = {}
        applied: List[int] = []
        for it in its:
            idx = it - first
            code = states[idx]
            if code in _FINAL_CODES:
                continue
            moved[code] = moved.get(code, 0) + 1
            states[idx] = _SUCCEED
            applied.append(it)
        self._moved(moved, JobState.SUCCEED, its)
        return applied

    def _moved(self, moved: Dict[int, int], new: JobState, its: Sequence[int]) -> None:
        """Counts after a batch moved ``moved[old code]`` iterations to ``new``; each kind of
        change is checked against the transition table once (a bug raises, as one by one)."""
        counts = self.counts
        for code, n in moved.items():
            old = JobState.from_code(code)
            check_transition(f"{self.name} iterations {its[0]}..", old, new)
            counts[old] -= n
            counts[new] += n

    def restore_finished(self, records: Sequence[Tuple[Any, ...]]) -> List[Tuple[Any, ...]]:
        """Finished iterations of a replayed journal (records: job, iteration, state value, ...):
        QUEUED -> their final state, the only change a replay makes; an iteration already
        final keeps its first end.  Counts are added up once for the batch (a million records
        must replay in seconds).  Returns the records applied."""
        states, start, n = self.it_states, self.task.it_start, len(self.it_states)
        done: List[Tuple[Any, ...]] = []
        added: Counter = Counter()
        for r in records:
            idx = r[1] - start
            if 0 <= idx < n and states[idx] == _QUEUED:
                state = _FINAL_BY_VALUE.get(r[2])
                if state is not None:
                    states[idx] = state.code
                    added[state] += 1
                    done.append(r)
        if done:
            self.counts[JobState.QUEUED] -= len(done)
            self.counts.update(added)
        return done

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

    def add_failure(self, failure: Failure) -> bool:
        """Keep a failed iteration's details, the first MAX_FAILURES of them (a sweep of a
        million failing iterations must not keep a million stderr tails); True if kept."""
        if len(self.failures) >= MAX_FAILURES or any(f.iteration == failure.iteration for f in self.failures):
            return False
        self.failures.append(failure)
        return True

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
        """The job state its iterations imply once they are all final.

        As QCG-PilotJob: a job canceled as a whole is CANCELED; one with iterations canceled
        one by one, or omitted one by one (their own predecessor, "a:${it}", did not
        succeed), is FAILED.  A job omitted as a whole never gets here (its state is set).
        A job with an iteration the end of the run interrupted is INTERRUPTED (hpilot's own
        state): it is not done, whatever its other iterations did, and a resume goes on."""
        c = self.counts
        if self.canceled:  # definitive: its dependants were omitted when the cancel came
            return JobState.CANCELED
        if c[JobState.INTERRUPTED]:
            return JobState.INTERRUPTED
        if c[JobState.SUCCEED] == self.total:
            return JobState.SUCCEED
        if c[JobState.FAILED] or c[JobState.OMITTED] or self.partial_cancel:
            return JobState.FAILED
        if c[JobState.CANCELED]:  # the service was told to finish
            return JobState.CANCELED
        return JobState.FAILED

    @property
    def runtime(self) -> Optional[float]:
        span = self.runs.span()
        if span is None or span[1] is None:
            return None
        return span[1] - span[0]

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
