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

import collections.abc
import json
import math
import typing
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Type, Union

from hpilot.launcher import safejson
from hpilot.partition.allocator import Request, Slot
from hpilot.partition.messages import (
    CancelJob,
    IterationFinished,
    IterationsDropped,
    IterationsRan,
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
            IterationsStarted, IterationsSucceeded, IterationsRan, NodeStatus, TaskSpec, Execution, Resources,
            ResourceSize,
            IterSchedulerSpec, Template, Request, Slot)
_TYPES: Dict[str, Type[Any]] = {c.__name__: c for c in _CLASSES}
_NAMES: Dict[Type[Any], Tuple[str, ...]] = {c: tuple(f.name for f in fields(c)) for c in _CLASSES}
TOP = (Register, Leaving, ClientQuery, Registered, Refused, ClientAnswer, Heartbeat, Bye, Work, CancelJob, Shutdown,
       IterationStarted, IterationFinished, IterationsDropped, Reserve, RunReserved, Release, Reserved,
       IterationsStarted, IterationsSucceeded, IterationsRan, NodeStatus)
Message = Union[Register, Leaving, ClientQuery, Registered, Refused, ClientAnswer, Heartbeat, Bye, Work, CancelJob,
                Shutdown, IterationStarted, IterationFinished, IterationsDropped, Reserve, RunReserved, Release,
                Reserved, IterationsStarted, IterationsSucceeded, IterationsRan, NodeStatus]
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
        if not (isinstance(ends, list) and len(ends) == 2 and _is_whole(ends[0]) and _is_whole(ends[1])):
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


def _columns_rule(b: Union[IterationsStarted, IterationsSucceeded, IterationsRan]) -> Optional[str]:
    n = len(b.iterations)
    cols = [getattr(b, f.name) for f in fields(b) if f.name not in ("job", "iterations", "cores")]
    return None if all(c is None or len(c) == n for c in cols) else "columns of different lengths"


_RULES: Dict[Type[Any], Callable[[Any], Optional[str]]] = {
    Execution: _execution_rule, IterSchedulerSpec: _scheduler_rule, ResourceSize: _size_rule, TaskSpec: _spec_rule,
    Work: _work_rule, IterationsStarted: _columns_rule, IterationsSucceeded: _columns_rule,
    IterationsRan: _columns_rule,
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


# ---- registration ----


def register(pid: str, host: str, os_pid: int, nodes: Tuple[Tuple[str, int], ...], tags: Tuple[str, ...]) -> Register:
    return Register(VERSION, pid, host, os_pid, nodes, tags)


def check_register(msg: Register) -> Optional[str]:
    """None when the registration speaks our version, else why not."""
    if msg.version != VERSION:
        return f"protocol version {msg.version}, this governor speaks {VERSION}"
    return None
