"""A partition's reports in bulk: one frame per loop pass, its batches in packed columns.

A partition reports every iteration's start and end.  One frame per report, each a generic
record (:mod:`hpilot.partition.wire`), cost the governor more in decoding than in handling;
so a loop pass's reports travel as one frame (:func:`encode_batch`, :func:`decode_frame`),
and a job's starts and plain successes of the pass as columns, packed.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from typing import Any, List, Optional, Sequence, Tuple

from hpilot.partition.messages import (
    IterationFinished,
    IterationsRan,
    IterationsStarted,
    IterationsSucceeded,
    IterationStarted,
)
from hpilot.partition.wire import (
    _WHOLE,
    TOP,
    Message,
    WireError,
    _dumps,
    _is_number,
    _is_whole,
    _json,
    _message,
    _out,
    decode,
    encode,
)

# The frame: a JSON array of positional records,
# ["s", ...IterationStarted fields] and ["f", ...IterationFinished fields], and a job's
# batches as columns, ["S", job, its, allocations, wds, scheduled, started, pids, cores]
# and ["F", job, its, allocations, wds, started, finished, cores], and those that did both in
# the pass as ["R", job, its, allocations, wds, scheduled, started, begun or null, finished,
# pids, cores] (anything else in its generic form).  Decoding checks each record's fields by position; a bad
# record is dropped with its reason and the rest of the batch is kept.

_STARTED = ("job", "iteration", "allocation", "wd", "scheduled", "started", "cores", "pid")
_FINISHED = ("job", "iteration", "exit_code", "started", "finished", "allocation", "wd", "cores", "reason",
             "canceled")


_BATCHES = (IterationsStarted, IterationsSucceeded, IterationsRan)


def encode_batch(msgs: Sequence[Message]) -> bytes:
    """Many messages, one frame (a single message gets its plain form, but for a batch: its
    columns are packed only in a frame)."""
    if len(msgs) == 1 and type(msgs[0]) not in _BATCHES:
        return encode(msgs[0])
    items: List[Any] = []
    for m in msgs:
        if type(m) is IterationStarted:
            items.append(["s", m.job, m.iteration, m.allocation, m.wd, m.scheduled, m.started, m.cores, m.pid])
        elif type(m) is IterationFinished and not m.lost:  # a lost one is rare: its generic form
            rec = ["f", m.job, m.iteration, m.exit_code, m.started, m.finished, m.allocation, m.wd,
                   m.cores, m.reason, m.canceled]
            if m.stderr_tail is not None:  # a failed task's stderr: rare, so only then a field more
                rec.append(m.stderr_tail)
            items.append(rec)
        elif type(m) is IterationsStarted:
            items.append(["S", m.job, _its_out(m.iterations), _strs_out(m.allocations), _strs_out(m.wds),
                          _floats_out(m.scheduled), _floats_out(m.started), _pids_out(m.pids), m.cores])
        elif type(m) is IterationsSucceeded:
            items.append(["F", m.job, _its_out(m.iterations), _strs_out(m.allocations), _strs_out(m.wds),
                          _floats_out(m.started), _floats_out(m.finished), m.cores])
        elif type(m) is IterationsRan:
            items.append(["R", m.job, _its_out(m.iterations), _strs_out(m.allocations), _strs_out(m.wds),
                          _floats_out(m.scheduled), _floats_out(m.started),
                          None if m.begun is None else _floats_out(m.begun), _floats_out(m.finished),
                          _pids_out(m.pids), m.cores])
        elif type(m) in TOP:
            items.append(_out(m))
        else:
            raise WireError(f"not a message: {type(m).__name__}")
    return _dumps(items).encode()


def decode_frame(frame: bytes) -> Tuple[List[Message], List[str]]:
    """One frame -> its messages (one, or a batch), and why each dropped record was dropped.
    A frame that is not JSON at all raises WireError."""
    if not frame.startswith(b"["):
        return [decode(frame)], []
    raw = _json(frame)
    msgs: List[Message] = []
    errors: List[str] = []
    for item in raw:
        try:
            msgs.append(_compact(item))
        except WireError as e:
            errors.append(str(e))
    return msgs, errors


def _compact(item: Any) -> Message:
    if isinstance(item, dict):
        return _message(item)
    if not isinstance(item, list) or not item:
        raise WireError("a batch holds records")
    tag, vals = item[0], item[1:]
    if tag == "s" and len(vals) == len(_STARTED):
        job, it, alloc, wd, sched, started, cores, pid = vals
        ok = (isinstance(alloc, str) and isinstance(wd, str) and _num(sched) and _num(started)
              and (pid is None or _whole(pid)))
        if ok and isinstance(job, str) and _whole(it) and _whole(cores):
            return IterationStarted(job, it, alloc, wd, sched, started, cores, pid)
        raise WireError(f"IterationStarted: bad field(s) in {str(item)[:200]}")
    if tag == "f" and len(vals) in (len(_FINISHED), len(_FINISHED) + 1):
        job, it, code, started, finished, alloc, wd, cores, reason, canceled = vals[:len(_FINISHED)]
        tail = vals[len(_FINISHED)] if len(vals) > len(_FINISHED) else None
        ok = (isinstance(alloc, str) and isinstance(wd, str) and _num(started) and _num(finished)
              and (reason is None or isinstance(reason, str)) and isinstance(canceled, bool)
              and (tail is None or isinstance(tail, str)))
        if ok and isinstance(job, str) and _whole(it) and _whole(code) and _whole(cores):
            return IterationFinished(job, it, code, started, finished, alloc, wd, cores, reason, canceled, tail)
        raise WireError(f"IterationFinished: bad field(s) in {str(item)[:200]}")
    if tag == "S" and len(vals) == 8:
        return _columns(IterationsStarted, vals, item)
    if tag == "F" and len(vals) == 7:
        return _columns(IterationsSucceeded, vals, item)
    if tag == "R" and len(vals) == 10:
        return _columns(IterationsRan, vals, item)
    raise WireError(f"unknown compact record {str(item)[:80]}")


def _columns(cls: Any, vals: List[Any], item: Any) -> Message:
    """A batch in columns: every column as long as the iterations, each cell of its type; a
    column is a JSON list, or one of the packed forms of :func:`_its_out` and the others."""
    job, cores = vals[0], vals[-1]
    its = _its_in(vals[1])
    kinds = _KINDS[cls]
    cols = None
    if its is not None and isinstance(job, str) and _whole(cores):
        cols = [read(col, len(its)) for read, col in zip(kinds, vals[2:-1])]
    if cols is None or any(c is None for c in cols):
        raise WireError(f"{cls.__name__}: bad field(s) in {str(item)[:200]}")
    return cls(job, its, *(None if c is _ABSENT else c for c in cols), cores)


# Packed columns.  A partition reports a job's starts and ends of a pass as columns, and
# JSON's numbers and repeated strings were most of what both ends spent on a report: times
# travel as the bytes of an array of doubles (base64), strings as a table and indices, a
# run of iterations as its range, a column of one value as that value.
_LITTLE = sys.byteorder == "little"
MAX_BATCH = 1 << 20  # iterations in one packed run: far above a pass's, far below a memory bomb


def _its_out(its: Sequence[int]) -> Any:
    n = len(its)
    if 2 < n <= MAX_BATCH and its[-1] - its[0] == n - 1 and tuple(its) == tuple(range(its[0], its[0] + n)):
        return {"r": [its[0], its[0] + n]}
    return list(its)


def _its_in(raw: Any) -> Optional[Tuple[int, ...]]:
    if isinstance(raw, list):
        return tuple(raw) if _all_whole(raw) else None
    if isinstance(raw, dict) and raw.keys() == {"r"}:
        ends = raw["r"]
        if isinstance(ends, list) and len(ends) == 2 and _whole(ends[0]) and _whole(ends[1]) \
                and 0 <= ends[1] - ends[0] <= MAX_BATCH:
            return tuple(range(ends[0], ends[1]))
    return None


def _floats_out(col: Sequence[float]) -> Any:
    try:
        packed = array("d", col)
    except TypeError:
        return list(col)
    return {"f": _pack(packed)}


def _floats_in(raw: Any, n: int) -> Optional[Tuple[float, ...]]:
    if isinstance(raw, list):
        return tuple(raw) if len(raw) == n and _all_numbers(raw) else None
    if not (isinstance(raw, dict) and raw.keys() == {"f"} and isinstance(raw["f"], str)):
        return None
    col = _unpack(raw["f"], "d", n)
    # no NaN, no infinity (nor sums that overflow)
    return tuple(col) if col is not None and math.isfinite(sum(col)) else None


def _strs_out(col: Sequence[str]) -> Any:
    if len(col) > 1 and col.count(col[0]) == len(col):
        return {"x": col[0]}
    table = list(dict.fromkeys(col))
    if len(table) * 2 > len(col):
        return list(col)
    number = {s: i for i, s in enumerate(table)}
    return {"k": table, "i": _pack(array("i", map(number.__getitem__, col)))}


def _strs_in(raw: Any, n: int) -> Optional[Tuple[str, ...]]:
    if isinstance(raw, list):
        return tuple(raw) if len(raw) == n and set(map(type, raw)) <= _STR else None
    if not isinstance(raw, dict):
        return None
    if raw.keys() == {"x"}:
        return (raw["x"],) * n if isinstance(raw["x"], str) else None
    table, packed = raw.get("k"), raw.get("i")
    if raw.keys() != {"k", "i"} or not isinstance(table, list) or not isinstance(packed, str) \
            or not set(map(type, table)) <= _STR:
        return None
    idx = _unpack(packed, "i", n)
    if idx is None or (n and (min(idx) < 0 or max(idx) >= len(table))):
        return None
    return tuple(map(table.__getitem__, idx))


def _pack(col: array) -> str:
    """A column's bytes, little-endian, as base64 text."""
    if not _LITTLE:
        col.byteswap()
    return base64.b64encode(col.tobytes()).decode("ascii")


def _unpack(text: str, typecode: str, n: int) -> Optional[array]:
    """The column of ``n`` cells that :func:`_pack` made, or None if ``text`` is not one."""
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        return None
    col = array(typecode)
    if len(data) != col.itemsize * n:
        return None
    col.frombytes(data)
    if not _LITTLE:
        col.byteswap()
    return col


def _pids_out(col: Sequence[Optional[int]]) -> Any:
    return {"x": None} if len(col) > 1 and col.count(None) == len(col) else list(col)


def _pids_in(raw: Any, n: int) -> Optional[Tuple[Optional[int], ...]]:
    if isinstance(raw, list):
        return tuple(raw) if len(raw) == n and _all_pids(raw) else None
    if isinstance(raw, dict) and raw.keys() == {"x"} and raw["x"] is None:
        return (None,) * n
    return None


# A batch's columns are checked a column at a time in C (map, set, min, max): the governor
# decodes every iteration of a large allocation, and a Python call per cell was most of it.
_STR = {str}
_INT = {int}
_FLOAT = {float}
_NONE = {type(None)}


def _all_whole(col: List[Any]) -> bool:
    return not col or (set(map(type, col)) <= _INT and min(col) >= -_WHOLE and max(col) < _WHOLE)


def _all_pids(col: List[Any]) -> bool:
    """Whole numbers or null (no pid: a dry run, an agent's task)."""
    types = set(map(type, col))
    if types <= _NONE:
        return True
    if types <= _INT:
        return _all_whole(col)
    return all(x is None or _whole(x) for x in col)


def _all_numbers(col: List[Any]) -> bool:
    """Finite floats (a time column), or whole numbers among them: cell by cell then."""
    if set(map(type, col)) <= _FLOAT:
        return all(map(math.isfinite, col))
    return all(map(_num, col))


_whole = _is_whole
_num = _is_number
_ABSENT: Any = object()  # an optional column sent as null (None: a bad column)


def _maybe_floats_in(raw: Any, n: int) -> Any:
    return _ABSENT if raw is None else _floats_in(raw, n)


_KINDS: Any = {
    IterationsStarted: (_strs_in, _strs_in, _floats_in, _floats_in, _pids_in),
    IterationsSucceeded: (_strs_in, _strs_in, _floats_in, _floats_in),
    IterationsRan: (_strs_in, _strs_in, _floats_in, _floats_in, _maybe_floats_in, _floats_in, _pids_in),
}
