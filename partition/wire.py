"""What a governor and its partition managers say to each other: frozen records, one codec.

The work messages themselves (:class:`Work`, :class:`CancelJob`, the iteration reports)
are the ones the in-process partition already exchanges with the governor
(``partition.messages``); this module adds the few records a remote partition needs
(register, heartbeat, leave, a client's query forwarded to the governor and its
answer) and a codec for all of them.

One message is one ZeroMQ frame of JSON.  The codec is generic over a closed set of
frozen dataclasses: a record is ``{"@": "ClassName", field: value, ...}``, a tuple
``{"(": [...]}`` and a range ``{"r": [start, stop]}`` (so a million iterations are
two numbers).  :func:`decode` builds only the listed classes; anything else raises
:class:`WireError`, which the receiver logs and drops.

Authentication is the transport's: the governor's partition socket is a CURVE server
that admits only the holders of the run's partition key (``partition.key`` in its run
directory, 0600; :mod:`hpilot.launcher.curve`), on loopback too.  A stranger cannot
register, and a captured registration cannot be replayed or altered (each CURVE
connection has its own keys, each message its own nonce).  The governor accepts nothing
but a :class:`Register` from a routing id it does not know.
"""

from __future__ import annotations

import base64
import collections.abc
import json
import math
import sys
import typing
from array import array
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

from hpilot.launcher import safejson
from hpilot.partition.allocator import Request, Slot
from hpilot.partition.messages import (
    CancelJob,
    IterationFinished,
    IterationsDropped,
    IterationsStarted,
    IterationsSucceeded,
    IterationStarted,
    NodeStatus,
    Release,
    Reserve,
    Reserved,
    RunReserved,
    Shutdown,
    TaskSpec,
    Work,
)
from hpilot.partition.spec import Execution, IterSchedulerSpec, Resources, ResourceSize
from hpilot.partition.variables import Template

VERSION = 3  # 2: CURVE at the transport; Register carries no proof any more. 3: packed report columns
KEY_ENV = "HPILOT_PARTITION_KEY"  # the path of the partition key file, for a manager started by hand


class WireError(ValueError):
    """A frame that is not a valid message; the text says what is wrong with it."""


# ---- partition -> governor ----


@dataclass(frozen=True)
class Register:
    version: int
    id: str
    host: str
    pid: int
    nodes: Tuple[Tuple[str, int], ...]  # (node name, cores) of this partition
    tags: Tuple[str, ...]


@dataclass(frozen=True)
class Leaving:
    """The partition drains: no more work for it; it finishes what it holds, then says Bye."""

    reason: str


@dataclass(frozen=True)
class ClientQuery:
    """A client's request that reached this partition manager's client port (``--net``).
    A partition holds no jobs, so every request is forwarded to the governor, which
    answers it as its own clients' and sends back a :class:`ClientAnswer` with the
    same ``qid``.  ``payload`` is the request's JSON text: the codec never interprets
    a client's data (a ``{"@": ...}`` inside it stays text)."""

    qid: int
    payload: str


# ---- governor -> partition ----


@dataclass(frozen=True)
class Registered:
    name: str
    heartbeat: float  # seconds between heartbeats, each way


@dataclass(frozen=True)
class Refused:
    reason: str


@dataclass(frozen=True)
class ClientAnswer:
    """The governor's response (JSON text) to the :class:`ClientQuery` ``qid``."""

    qid: int
    response: str


# ---- both ways ----


@dataclass(frozen=True)
class Heartbeat:
    now: float


@dataclass(frozen=True)
class Bye:
    reason: str


_CLASSES = (Register, Leaving, ClientQuery, Registered, Refused, ClientAnswer, Heartbeat, Bye, Work, CancelJob,
            Shutdown, IterationStarted, IterationFinished, IterationsDropped, Reserve, RunReserved, Release, Reserved,
            IterationsStarted, IterationsSucceeded, NodeStatus, TaskSpec, Execution, Resources, ResourceSize,
            IterSchedulerSpec, Template, Request, Slot)
_TYPES: Dict[str, Type[Any]] = {c.__name__: c for c in _CLASSES}
_NAMES: Dict[Type[Any], Tuple[str, ...]] = {c: tuple(f.name for f in fields(c)) for c in _CLASSES}
TOP = (Register, Leaving, ClientQuery, Registered, Refused, ClientAnswer, Heartbeat, Bye, Work, CancelJob, Shutdown,
       IterationStarted, IterationFinished, IterationsDropped, Reserve, RunReserved, Release, Reserved,
       IterationsStarted, IterationsSucceeded, NodeStatus)
Message = Union[Register, Leaving, ClientQuery, Registered, Refused, ClientAnswer, Heartbeat, Bye, Work, CancelJob,
                Shutdown, IterationStarted, IterationFinished, IterationsDropped, Reserve, RunReserved, Release,
                Reserved, IterationsStarted, IterationsSucceeded, NodeStatus]
_dumps = json.JSONEncoder(separators=(",", ":")).encode
# A Work message nests about a dozen deep; a loop pass's reports fit in a few megabytes.
LIMITS = safejson.Limits(max_bytes=256 * 1024 * 1024, max_depth=32)


def _out(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, range):
        if v.step != 1:
            return {"(": [_out(x) for x in v]}
        return {"r": [v.start, v.stop]}
    if isinstance(v, tuple):
        return {"(": [_out(x) for x in v]}
    if isinstance(v, list):
        return [_out(x) for x in v]
    if isinstance(v, dict):
        return {"{": {str(k): _out(x) for k, x in v.items()}}
    if is_dataclass(v) and type(v) in _NAMES:
        d = {name: _out(getattr(v, name)) for name in _NAMES[type(v)]}
        d["@"] = type(v).__name__
        return d
    raise WireError(f"cannot encode a {type(v).__name__}")


def _in(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, list):
        return [_in(x) for x in v]
    if not isinstance(v, dict):
        raise WireError(f"unexpected {type(v).__name__}")
    if "r" in v and len(v) == 1:
        ends = v["r"]
        if not (isinstance(ends, list) and len(ends) == 2 and _whole(ends[0]) and _whole(ends[1])):
            raise WireError("a range must be two whole numbers")
        return range(ends[0], ends[1])
    if "(" in v and len(v) == 1:
        if not isinstance(v["("], list):
            raise WireError("a tuple must be a list")
        return tuple(_in(x) for x in v["("])
    if "{" in v and len(v) == 1:
        if not isinstance(v["{"], dict):
            raise WireError("a mapping must be an object")
        return {k: _in(x) for k, x in v["{"].items()}
    name = v.get("@")
    cls = _TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise WireError(f"unknown record {name!r}")
    kw = {k: _in(x) for k, x in v.items() if k != "@"}
    unknown = set(kw) - set(_NAMES[cls])
    if unknown:
        raise WireError(f"{name}: unknown field(s) {', '.join(sorted(unknown))}")
    try:
        record = cls(**kw)
    except TypeError as e:
        raise WireError(f"{name}: {e}") from None
    for field_name, hint, ok in _checks(cls):
        if not ok(getattr(record, field_name)):
            raise WireError(f"{name}.{field_name}: not a {_show(hint)}")
    rule = _RULES.get(cls)
    why = rule(record) if rule is not None else None
    if why is not None:
        raise WireError(f"{name}: {why}")
    return record


# ---- what the types cannot say: the few invariants the partition core relies on ----
# (the governor's submit checks guarantee them; a frame that breaks one is dropped here,
# before the core could fail on it)


def _execution_rule(e: Execution) -> Optional[str]:
    return None if e.exec is not None or e.script is not None else "neither exec nor script"


def _scheduler_rule(s: IterSchedulerSpec) -> Optional[str]:
    parts = s.param("parts")
    if parts is not None and not (_is_whole(parts) and parts >= 1):
        return "parts must be a whole number >= 1"
    return None


def _size_rule(r: ResourceSize) -> Optional[str]:
    bad = [n for n in ("exact", "min", "max") if getattr(r, n) is not None and getattr(r, n) < 1]
    return f"{', '.join(bad)} must be >= 1" if bad else None


def _spec_rule(t: TaskSpec) -> Optional[str]:
    if t.it_start < 0 or t.it_count < 1:
        return "iterations must start at >= 0 and be at least one"
    if t.it_values is not None and len(t.it_values) != t.it_count:
        return "one value per iteration"
    return None


def _work_rule(w: Work) -> Optional[str]:
    its = w.iterations
    first, count = w.spec.it_start, w.spec.it_count
    if isinstance(its, range):  # (no len(): a range may be wider than a C long)
        inside = its.start >= its.stop or (first <= its.start and its.stop <= first + count)
    else:
        inside = all(first <= i < first + count for i in its)
    return None if inside else "iterations outside the job's"


_RULES: Dict[Type[Any], Callable[[Any], Optional[str]]] = {
    Execution: _execution_rule, IterSchedulerSpec: _scheduler_rule, ResourceSize: _size_rule, TaskSpec: _spec_rule,
    Work: _work_rule,
}


# ---- field types: every field of every record is checked against its annotation ----
# Each annotation is turned once into a check (a closure): a Work message, with its
# templates, is checked in a few microseconds.

_WHOLE = 2 ** 63  # whole numbers beyond 64 bits are refused: nothing here counts that far
Check = Callable[[Any], bool]
_CHECKS: Dict[Type[Any], Tuple[Tuple[str, Any, Check], ...]] = {}
_COMPILED: Dict[Any, Check] = {}


def _checks(cls: Type[Any]) -> Tuple[Tuple[str, Any, Check], ...]:
    got = _CHECKS.get(cls)
    if got is None:
        types = typing.get_type_hints(cls)
        got = _CHECKS[cls] = tuple((f.name, types[f.name], _check_of(types[f.name])) for f in fields(cls))
    return got


def _conforms(v: Any, hint: Any) -> bool:
    """Whether the decoded value ``v`` is of the annotated type ``hint``."""
    return _check_of(hint)(v)


def _is_whole(v: Any) -> bool:
    return type(v) is int and -_WHOLE <= v < _WHOLE


def _is_number(v: Any) -> bool:
    return (type(v) is float and math.isfinite(v)) or _is_whole(v)


_SIMPLE: Dict[Any, Check] = {
    Any: lambda v: True, str: lambda v: type(v) is str, int: _is_whole, float: _is_number,
    bool: lambda v: type(v) is bool, type(None): lambda v: v is None,
}


def _check_of(hint: Any) -> Check:
    got = _SIMPLE.get(hint) or _COMPILED.get(hint)
    if got is None:
        got = _COMPILED[hint] = _compile(hint)
    return got


def _compile(hint: Any) -> Check:
    """The check of one annotation (only the shapes the records here use; others never pass)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        arms = tuple(_check_of(a) for a in args)
        if len(arms) == 2:
            first, second = arms
            return lambda v: first(v) or second(v)
        return lambda v: any(arm(v) for arm in arms)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        each = _check_of(args[0])
        return lambda v: type(v) is tuple and all(map(each, v))
    if origin is tuple:
        items = tuple(_check_of(a) for a in args)
        return lambda v: type(v) is tuple and len(v) == len(items) and all(c(x) for c, x in zip(items, v))
    if origin is collections.abc.Sequence:  # iterations: a range (step 1) or a tuple
        each = _check_of(args[0])
        return lambda v: (-_WHOLE <= v.start <= v.stop < _WHOLE) if type(v) is range else (
            type(v) is tuple and all(map(each, v)))
    if origin is dict:
        value = _check_of(args[1])
        return lambda v: type(v) is dict and all(type(k) is str and value(x) for k, x in v.items())
    if isinstance(hint, type) and is_dataclass(hint):
        return lambda v: type(v) is hint  # its own fields were checked when it was built
    return lambda v: False


def _show(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def encode(msg: Message) -> bytes:
    if type(msg) not in TOP:
        raise WireError(f"not a message: {type(msg).__name__}")
    if type(msg) is Work:  # a job's refills repeat its spec: its encoding is made once
        return _dumps({"spec": _spec_out(msg.spec), "iterations": _out(msg.iterations), "now": msg.now,
                       "@": "Work"}).encode()
    return _dumps(_out(msg)).encode()


_SPECS: Dict[int, Tuple[TaskSpec, Any]] = {}  # id -> (the spec, kept alive so the id stays its, its encoding)


def _spec_out(spec: TaskSpec) -> Any:
    got = _SPECS.get(id(spec))
    if got is not None and got[0] is spec:
        return got[1]
    if len(_SPECS) >= 1024:
        _SPECS.clear()
    out = _SPECS[id(spec)] = (spec, _out(spec))
    return out[1]


def decode(frame: bytes) -> Message:
    """One frame -> one message, or WireError saying why not."""
    return _message(_json(frame))


def _json(frame: bytes) -> Any:
    try:
        return safejson.loads(frame, LIMITS)
    except safejson.DecodeError as e:
        raise WireError(f"not JSON: {e}") from None


def _message(raw: Any) -> Message:
    """A message in its generic form, built and checked (every field's type, in :func:`_in`)."""
    msg = _in(raw)
    if type(msg) not in TOP:
        raise WireError(f"not a message: {type(msg).__name__}")
    return msg


# ---- reports in bulk ----
# A partition reports every iteration's start and end.  One frame per report, each a
# generic record, cost the governor more in decoding than in handling; so a loop
# pass's reports travel as one frame: a JSON array of positional records,
# ["s", ...IterationStarted fields] and ["f", ...IterationFinished fields], and a job's
# batches as columns, ["S", job, its, allocations, wds, scheduled, started, pids, cores]
# and ["F", job, its, allocations, wds, started, finished, cores] (anything else in its
# generic form).  Decoding checks each record's fields by position; a bad
# record is dropped with its reason and the rest of the batch is kept.

_STARTED = ("job", "iteration", "allocation", "wd", "scheduled", "started", "cores", "pid")
_FINISHED = ("job", "iteration", "exit_code", "started", "finished", "allocation", "wd", "cores", "reason",
             "canceled")


def encode_batch(msgs: Sequence[Message]) -> bytes:
    """Many messages, one frame (a single message still gets its plain form)."""
    if len(msgs) == 1:
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
    raise WireError(f"unknown compact record {str(item)[:80]}")


def _columns(cls: Any, vals: List[Any], item: Any) -> Message:
    """A batch in columns: every column as long as the iterations, each cell of its type; a
    column is a JSON list, or one of the packed forms of :func:`_its_out` and the others."""
    job, cores = vals[0], vals[-1]
    its = _its_in(vals[1])
    kinds = (_strs_in, _strs_in, _floats_in, _floats_in, _pids_in) if cls is IterationsStarted else \
        (_strs_in, _strs_in, _floats_in, _floats_in)
    cols = None
    if its is not None and isinstance(job, str) and _whole(cores):
        cols = [read(col, len(its)) for read, col in zip(kinds, vals[2:-1])]
    if cols is None or any(c is None for c in cols):
        raise WireError(f"{cls.__name__}: bad field(s) in {str(item)[:200]}")
    return cls(job, its, *cols, cores)


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
    if not _LITTLE:
        packed.byteswap()
    return {"f": base64.b64encode(packed.tobytes()).decode("ascii")}


def _floats_in(raw: Any, n: int) -> Optional[Tuple[float, ...]]:
    if isinstance(raw, list):
        return tuple(raw) if len(raw) == n and _all_numbers(raw) else None
    if not (isinstance(raw, dict) and raw.keys() == {"f"} and isinstance(raw["f"], str)):
        return None
    try:
        data = base64.b64decode(raw["f"], validate=True)
    except (ValueError, TypeError):
        return None
    if len(data) != 8 * n:
        return None
    col = array("d")
    col.frombytes(data)
    if not _LITTLE:
        col.byteswap()
    return tuple(col) if math.isfinite(sum(col)) else None  # no NaN, no infinity (nor sums that overflow)


def _strs_out(col: Sequence[str]) -> Any:
    if len(col) > 1 and col.count(col[0]) == len(col):
        return {"x": col[0]}
    table = list(dict.fromkeys(col))
    if len(table) * 2 > len(col):
        return list(col)
    number = {s: i for i, s in enumerate(table)}
    idx = array("i", map(number.__getitem__, col))
    if not _LITTLE:
        idx.byteswap()
    return {"k": table, "i": base64.b64encode(idx.tobytes()).decode("ascii")}


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
    try:
        data = base64.b64decode(packed, validate=True)
    except (ValueError, TypeError):
        return None
    if len(data) != 4 * n:
        return None
    idx = array("i")
    idx.frombytes(data)
    if not _LITTLE:
        idx.byteswap()
    if n and (min(idx) < 0 or max(idx) >= len(table)):
        return None
    return tuple(map(table.__getitem__, idx))


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


# ---- registration ----


def register(pid: str, host: str, os_pid: int, nodes: Tuple[Tuple[str, int], ...], tags: Tuple[str, ...]) -> Register:
    return Register(VERSION, pid, host, os_pid, nodes, tags)


def check_register(msg: Register) -> Optional[str]:
    """None when the registration speaks our version, else why not."""
    if msg.version != VERSION:
        return f"protocol version {msg.version}, this governor speaks {VERSION}"
    return None
