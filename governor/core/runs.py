"""Where and when each iteration of a job ran, in columns.

A job of a million iterations that all run must not cost a million Python objects:
an object per run (three floats, two strings, a dict entry) was about 250 bytes, so
a 1M-iteration sweep held 250 MB in the governor alone.  Here a job's runs are two
flat arrays indexed by iteration: the times as doubles, the rest as 32-bit numbers
(strings such as the allocation and wd are numbers into a small table of distinct
values).  That is 48 bytes per iteration, allocated in chunks of CHUNK iterations as
the first of each runs (a million-iteration job canceled after two runs costs one
chunk, not 48 MB).  Failure reasons are rare and kept in a dict.

Callers read and update a run through :class:`RunView`, a two-slot view that reads
and writes the columns; :class:`IterRun` is the plain record used to add a run.
Runs replayed from a journal stay as their parsed record until someone reads them
(:meth:`Runs.add_compact`), so a resume does not rebuild columns nobody asks for.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

_NAN = float("nan")
_NONE = -(2 ** 31)  # an absent exit code or pid
_NAN_ONE = (_NAN,)
_NONE_ONE = (_NONE,)
# the int columns of one iteration: attempts (0: never ran), exit code, pid, then string
# table indices for allocation, wd and partition (0 is None)
_ATT, _EXIT, _PID, _ALLOC, _WD, _PART = range(6)
_NI = 6
# the time columns: scheduled, started, finished (NaN while running)
_SCHED, _START, _FIN = range(3)
_NT = 3
CHUNK = 4096  # iterations per chunk of columns
_SHIFT = CHUNK.bit_length() - 1
_MASK = CHUNK - 1


def runs_in(its: Sequence[int], first: int, count: int) -> Optional[List[Tuple[int, int]]]:
    """``its`` as a few runs of consecutive iterations, each as (position in ``its``, its end),
    if they are strictly increasing and inside ``first .. first + count - 1``; else None.

    A partition reports its starts and ends in iteration order, and its batches are runs of
    what it was granted, so a batch is one run, or a few where grants meet: each run is then
    a slice, counted and written in C.  The seams are found by halving (a piece is one run
    when its ends are as far apart as its length), so a few runs cost a few checks."""
    n = len(its)
    if not n:
        return None
    if type(its) is range:
        ok = its.step == 1 and first <= its[0] and its[-1] < first + count
        return [(0, n)] if ok else None
    lo, hi = its[0], its[-1]
    if lo < first or hi >= first + count:
        return None
    if hi - lo == n - 1 and (n < 3 or tuple(its) == tuple(range(lo, lo + n))):
        return [(0, n)]
    seq = tuple(its)
    if hi - lo < n - 1 or len(set(seq)) != n or list(seq) != sorted(seq):  # repeats, or out of order
        return None
    out: List[Tuple[int, int]] = []
    todo = [(0, n)]
    for _ in range(64 * MAX_RUNS):  # enough halvings for MAX_RUNS runs in any batch
        if not todo:
            return out
        i, j = todo.pop()
        if seq[j - 1] - seq[i] == j - 1 - i:
            if out and out[-1][1] == i and seq[i] == seq[i - 1] + 1:
                out[-1] = (out[-1][0], j)  # two halves of one run
            elif len(out) == MAX_RUNS:
                return None
            else:
                out.append((i, j))
        else:
            m = (i + j) // 2
            todo += [(m, j), (i, m)]
    return None


MAX_RUNS = 16  # more seams than this in one batch: the general path


class IterRun:
    """A run to add with ``runs[it] = IterRun(...)``."""

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


def _opt(v: Optional[int]) -> int:
    return _NONE if v is None else v


class RunView:
    """One iteration's run, read and written in its job's columns."""

    __slots__ = ("_r", "_i")

    def __init__(self, runs: Runs, idx: int) -> None:
        self._r, self._i = runs, idx

    def _int(self, col: int) -> int:
        i = self._i
        return self._r._chunks[i >> _SHIFT][1][(i & _MASK) * _NI + col]

    def _set_int(self, col: int, v: int) -> None:
        i = self._i
        self._r._chunks[i >> _SHIFT][1][(i & _MASK) * _NI + col] = v

    def _time(self, col: int) -> float:
        i = self._i
        return self._r._chunks[i >> _SHIFT][0][(i & _MASK) * _NT + col]

    def _set_time(self, col: int, v: float) -> None:
        i = self._i
        self._r._chunks[i >> _SHIFT][0][(i & _MASK) * _NT + col] = v

    @property
    def allocation(self) -> str:
        return self._r._strs[self._int(_ALLOC)] or ""

    @property
    def wd(self) -> str:
        return self._r._strs[self._int(_WD)] or ""

    @property
    def partition(self) -> Optional[str]:
        return self._r._strs[self._int(_PART)]

    @partition.setter
    def partition(self, v: Optional[str]) -> None:
        self._set_int(_PART, self._r._str(v))

    @property
    def scheduled(self) -> float:
        return self._time(_SCHED)

    @property
    def started(self) -> float:
        return self._time(_START)

    @property
    def finished(self) -> Optional[float]:
        v = self._time(_FIN)
        return None if math.isnan(v) else v

    @finished.setter
    def finished(self, v: Optional[float]) -> None:
        self._set_time(_FIN, _NAN if v is None else v)

    @property
    def exit_code(self) -> Optional[int]:
        v = self._int(_EXIT)
        return None if v == _NONE else v

    @exit_code.setter
    def exit_code(self, v: Optional[int]) -> None:
        self._set_int(_EXIT, _opt(v))

    @property
    def pid(self) -> Optional[int]:
        v = self._int(_PID)
        return None if v == _NONE else v

    @pid.setter
    def pid(self, v: Optional[int]) -> None:
        self._set_int(_PID, _opt(v))

    @property
    def attempts(self) -> int:
        return self._int(_ATT)

    @attempts.setter
    def attempts(self, v: int) -> None:
        self._set_int(_ATT, v)

    @property
    def reason(self) -> Optional[str]:
        return self._r._reasons.get(self._i)

    @reason.setter
    def reason(self, v: Optional[str]) -> None:
        if v is None:
            self._r._reasons.pop(self._i, None)
        else:
            self._r._reasons[self._i] = v

    @property
    def runtime(self) -> Optional[float]:
        fin = self.finished
        return None if fin is None else fin - self.started


class Runs:
    """The runs of one job's iterations ``it_start .. it_start + it_count - 1``."""

    __slots__ = ("_start", "_count", "_chunks", "_strs", "_str_idx", "_reasons", "_n", "_compact")
    _no_times = array("d")
    _no_ints = array("i")

    def __init__(self, it_start: int, it_count: int) -> None:
        self._start, self._count = it_start, it_count
        self._chunks: Dict[int, Tuple[array, array]] = {}  # chunk number -> (times, ints)
        self._strs: List[Optional[str]] = [None]
        self._str_idx: Dict[str, int] = {}
        self._reasons: Dict[int, str] = {}
        self._n = 0  # iterations that have a run in the columns
        self._compact: Optional[Dict[int, Tuple[Any, ...]]] = None

    def _str(self, s: Optional[str]) -> int:
        if s is None:
            return 0
        i = self._str_idx.get(s)
        if i is None:
            i = self._str_idx[s] = len(self._strs)
            self._strs.append(s)
        return i

    def _index(self, it: int) -> int:
        idx = it - self._start
        if not 0 <= idx < self._count:
            raise KeyError(it)
        return idx

    def _has(self, idx: int) -> bool:
        chunk = self._chunks.get(idx >> _SHIFT)
        return chunk is not None and chunk[1][(idx & _MASK) * _NI + _ATT] > 0

    def _chunk(self, idx: int) -> Tuple[array, array]:
        chunk = self._chunks.get(idx >> _SHIFT)
        if chunk is None:  # the first run in this chunk: its columns
            size = min(CHUNK, self._count - (idx & ~_MASK))
            chunk = self._chunks[idx >> _SHIFT] = (array("d", [_NAN]) * (size * _NT),
                                                   array("i", bytes(4 * size * _NI)))
        return chunk

    def __setitem__(self, it: int, run: IterRun) -> None:
        idx = self._index(it)
        if self._compact:
            self._compact.pop(it, None)
        self._write(idx, run.allocation, run.wd, run.scheduled, run.started, run.finished, max(1, run.attempts),
                    run.exit_code, run.pid, run.partition, run.reason)

    def start(self, it: int, allocation: str, wd: str, scheduled: float, started: float, pid: Optional[int],
              partition: Optional[str]) -> None:
        """An iteration starts (again: its attempts count up), written straight into the
        columns: the hot path of every task, so no record object in between."""
        idx = self._index(it)
        if self._compact and it in self._compact:
            self._load(it)
        chunk = self._chunks.get(idx >> _SHIFT)
        attempts = chunk[1][(idx & _MASK) * _NI + _ATT] if chunk is not None else 0
        self._write(idx, allocation, wd, scheduled, started, None, attempts + 1, None, pid, partition, None)

    def start_many(self, its: Sequence[int], allocations: Sequence[str], wds: Sequence[str],
                   scheduled: Sequence[float], started: Sequence[float], pids: Sequence[Optional[int]],
                   partition: Optional[str]) -> None:
        """A batch of starts, written column by column in one loop: the governor's per-task path,
        so lookups are hoisted out of it (the chunk is looked up again only when it changes, a
        string's number only when it differs from the previous iteration's)."""
        first, count, chunks, compact = self._start, self._count, self._chunks, self._compact
        part, str_idx = self._str(partition), self._str_idx.get
        pieces = None if compact else runs_in(its, first, count)
        if pieces is not None:
            for i, j in pieces:
                self._start_run(its[i] - first, allocations[i:j], wds[i:j], scheduled[i:j], started[i:j],
                                pids[i:j], part)
            return
        cur, times, ints = -1, self._no_times, self._no_ints
        last_a: Optional[str] = None
        last_w: Optional[str] = None
        ai = wi = 0
        for k, it in enumerate(its):
            idx = it - first
            if not 0 <= idx < count:
                raise KeyError(it)
            if compact and it in compact:
                self._load(it)
                cur = -1
            number = idx >> _SHIFT
            if number != cur:
                chunk = chunks.get(number) or self._chunk(idx)
                times, ints, cur = chunk[0], chunk[1], number
            t, i = (idx & _MASK) * _NT, (idx & _MASK) * _NI
            attempts = ints[i + _ATT]
            if attempts == 0:
                self._n += 1
            times[t + _SCHED] = scheduled[k]
            times[t + _START] = started[k]
            times[t + _FIN] = _NAN
            ints[i + _ATT] = attempts + 1
            ints[i + _EXIT] = _NONE
            pid = pids[k]
            ints[i + _PID] = _NONE if pid is None else pid
            a = allocations[k]
            if a != last_a:
                last_a, ai = a, str_idx(a) or self._str(a)
            ints[i + _ALLOC] = ai
            w = wds[k]
            if w != last_w:
                last_w, wi = w, str_idx(w) or self._str(w)
            ints[i + _WD] = wi
            ints[i + _PART] = part
        if self._reasons:
            for it in its:
                self._reasons.pop(it - first, None)

    def _start_run(self, lo: int, allocations: Sequence[str], wds: Sequence[str], scheduled: Sequence[float],
                   started: Sequence[float], pids: Sequence[Optional[int]], part: int) -> None:
        """start_many of the run of iterations at columns ``lo ..``: each column written as
        one strided slice per chunk, in C (a partition reports its starts so, mostly)."""
        n, k = len(allocations), 0
        while k < n:
            idx = lo + k
            times, ints = self._chunk(idx)
            a = idx & _MASK
            m = min(n - k, len(ints) // _NI - a)  # what of the run is in this chunk
            t0, i0 = a * _NT, a * _NI
            attempts = ints[i0 + _ATT:i0 + m * _NI:_NI]
            self._n += attempts.count(0)
            times[t0 + _SCHED:t0 + m * _NT:_NT] = array("d", scheduled[k:k + m])
            times[t0 + _START:t0 + m * _NT:_NT] = array("d", started[k:k + m])
            times[t0 + _FIN:t0 + m * _NT:_NT] = array("d", _NAN_ONE) * m
            ints[i0 + _ATT:i0 + m * _NI:_NI] = array("i", [x + 1 for x in attempts])
            ints[i0 + _EXIT:i0 + m * _NI:_NI] = array("i", _NONE_ONE) * m
            some = pids[k:k + m]
            ints[i0 + _PID:i0 + m * _NI:_NI] = (array("i", _NONE_ONE) * m if some.count(None) == m else
                                                array("i", [_NONE if p is None else p for p in some]))
            ints[i0 + _ALLOC:i0 + m * _NI:_NI] = self._numbers(allocations[k:k + m])
            ints[i0 + _WD:i0 + m * _NI:_NI] = self._numbers(wds[k:k + m])
            ints[i0 + _PART:i0 + m * _NI:_NI] = array("i", (part,)) * m
            k += m
        if self._reasons:
            for idx in range(lo, lo + n):
                self._reasons.pop(idx, None)

    def _numbers(self, strs: Sequence[str]) -> array:
        """The string-table numbers of ``strs`` as an int column (one lookup when all are one)."""
        if strs.count(strs[0]) == len(strs):
            return array("i", (self._str(strs[0]),)) * len(strs)
        number = self._str_idx.__getitem__
        try:
            return array("i", map(number, strs))  # in C: the strings are known but for the first few
        except KeyError:  # a new one: added on the way
            return array("i", [self._str(x) for x in strs])

    def finish_many(self, its: Sequence[int], finished: Sequence[float], started: Sequence[float],
                    allocations: Sequence[str], wds: Sequence[str]) -> None:
        """A batch of plain successes (exit code 0, no reason).  An iteration whose start was
        not seen (a replay's lost record) gets its run from the batch."""
        first, chunks = self._start, self._chunks
        pieces = None if self._compact else runs_in(its, first, self._count)
        if pieces is not None and self._finish_runs([(its[i] - first, i, j) for i, j in pieces], finished):
            return
        for k, it in enumerate(its):
            idx = it - first
            chunk = chunks.get(idx >> _SHIFT)
            i = (idx & _MASK) * _NI
            if chunk is None or chunk[1][i + _ATT] == 0:
                if not self._load(it):
                    self._write(idx, allocations[k], wds[k], started[k], started[k], finished[k], 1, 0, None,
                                None, None)
                    continue
                chunk = chunks[idx >> _SHIFT]
            times, ints = chunk
            times[(idx & _MASK) * _NT + _FIN] = finished[k]
            ints[i + _EXIT] = 0
        if self._reasons:
            for it in its:
                self._reasons.pop(it - first, None)

    def _finish_runs(self, pieces: List[Tuple[int, int, int]], finished: Sequence[float]) -> bool:
        """finish_many of runs of iterations (column, from, to in the batch) that all started
        (else False, nothing written): the finish and exit code columns as strided slices."""
        spans = []
        for lo, i, j in pieces:
            n, k = j - i, 0
            while k < n:
                idx = lo + k
                chunk = self._chunks.get(idx >> _SHIFT)
                if chunk is None:
                    return False
                a = idx & _MASK
                m = min(n - k, len(chunk[1]) // _NI - a)
                if 0 in chunk[1][a * _NI + _ATT:(a + m) * _NI:_NI]:  # one never started: the slow path
                    return False
                spans.append((chunk, a, i + k, m))
                k += m
        for (times, ints), a, k, m in spans:
            times[a * _NT + _FIN:(a + m) * _NT:_NT] = array("d", finished[k:k + m])
            ints[a * _NI + _EXIT:(a + m) * _NI:_NI] = array("i", (0,)) * m
        if self._reasons:
            for lo, i, j in pieces:
                for idx in range(lo, lo + j - i):
                    self._reasons.pop(idx, None)
        return True

    def _write(self, idx: int, allocation: str, wd: str, scheduled: float, started: float,
               finished: Optional[float], attempts: int, exit_code: Optional[int], pid: Optional[int],
               partition: Optional[str], reason: Optional[str]) -> None:
        """The one place that knows the column layout of a whole run."""
        if not self._has(idx):
            self._n += 1
        times, ints = self._chunk(idx)
        t, i = (idx & _MASK) * _NT, (idx & _MASK) * _NI
        times[t + _SCHED] = scheduled
        times[t + _START] = started
        times[t + _FIN] = _NAN if finished is None else finished
        ints[i + _ATT] = attempts
        ints[i + _EXIT] = _opt(exit_code)
        ints[i + _PID] = _opt(pid)
        ints[i + _ALLOC] = self._str(allocation)
        ints[i + _WD] = self._str(wd)
        ints[i + _PART] = self._str(partition)
        if reason is None:
            self._reasons.pop(idx, None)
        else:
            self._reasons[idx] = reason

    def finish(self, it: int, finished: float, exit_code: int, reason: Optional[str]) -> Optional[float]:
        """The run of ``it`` ended; returns its start, or None when it never started."""
        idx = it - self._start
        if not (0 <= idx < self._count and (self._has(idx) or self._load(it))):
            return None
        times, ints = self._chunks[idx >> _SHIFT]
        t, i = (idx & _MASK) * _NT, (idx & _MASK) * _NI
        times[t + _FIN] = finished
        ints[i + _EXIT] = exit_code
        if reason is None:
            self._reasons.pop(idx, None)
        else:
            self._reasons[idx] = reason
        return times[t + _START]

    def add_compact(self, it: int, record: Tuple[Any, ...]) -> None:
        """A run replayed from the journal, kept as its parsed record until it is read:
        ``record`` is (job, it, state, exit_code, start, end, allocation, wd, reason)."""
        if self._compact is None:
            self._compact = {}
        self._compact[it] = record

    def _load(self, it: int) -> bool:
        r = self._compact.pop(it, None) if self._compact else None
        if r is None:
            return False
        self[it] = IterRun(r[6], r[7], r[4], r[4], r[5], r[3], r[8])
        return True

    def get(self, it: int, default: Any = None) -> Any:
        idx = it - self._start
        if not 0 <= idx < self._count:
            return default
        if self._has(idx) or self._load(it):
            return RunView(self, idx)
        return default

    def __getitem__(self, it: int) -> RunView:
        run = self.get(it)
        if run is None:
            raise KeyError(it)
        return run

    def __contains__(self, it: object) -> bool:
        if not isinstance(it, int):
            return False
        idx = it - self._start
        return (0 <= idx < self._count and self._has(idx)) or bool(self._compact and it in self._compact)

    def __len__(self) -> int:
        return self._n + (len(self._compact) if self._compact else 0)

    def __bool__(self) -> bool:
        return len(self) > 0

    def _load_all(self) -> None:
        if self._compact:
            for it in list(self._compact):
                self._load(it)

    def __iter__(self) -> Iterator[int]:
        self._load_all()
        for number in sorted(self._chunks):
            ints = self._chunks[number][1]
            base = self._start + (number << _SHIFT)
            for k in range(len(ints) // _NI):
                if ints[k * _NI + _ATT] > 0:
                    yield base + k

    def keys(self) -> Iterator[int]:
        return iter(self)

    def values(self) -> Iterator[RunView]:
        for it in self:
            yield RunView(self, it - self._start)

    def items(self) -> Iterator[Tuple[int, RunView]]:
        for it in self:
            yield it, RunView(self, it - self._start)

    def span(self) -> Optional[Tuple[float, Optional[float]]]:
        """(first start, last finish or None) over every run: a job's runtime without a
        view per iteration."""
        starts: List[float] = []
        ends: List[float] = []
        for times, _ in self._chunks.values():  # a chunk at a time: no list of a million floats
            begun, done = _known(times[_START::_NT]), _known(times[_FIN::_NT])
            if begun:
                starts.append(min(begun))
            if done:
                ends.append(max(done))
        if self._compact:  # replayed runs are read in place, not loaded
            starts.append(min(r[4] for r in self._compact.values()))
            ends.append(max((r[5] for r in self._compact.values() if r[5] is not None), default=-math.inf))
        if not starts:
            return None
        last = max(ends, default=-math.inf)
        return min(starts), (None if last == -math.inf else last)


def _known(col: array) -> Sequence[float]:
    """The times of a column that are set (not NaN).  A chunk of a finished job has none
    unset, and its sum says so in C: then the column itself, without a Python test per cell
    (a report of a million-iteration job reads two such columns of every chunk)."""
    if not math.isnan(sum(col)):
        return col
    return [x for x in col if x == x]  # NaN is the one value not equal to itself
