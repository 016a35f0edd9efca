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

Authentication: the governor's run has a partition secret (a 0600 file in its run
directory, or ``HPILOT_PARTITION_SECRET``); a partition's :class:`Register` carries
``HMAC(secret, register|version|id|nonce)`` and the governor accepts nothing else from
a routing id it does not know.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union

from hpilot.partition.messages import (
    CancelJob,
    IterationFinished,
    IterationsDropped,
    IterationStarted,
    Shutdown,
    TaskSpec,
    Work,
)
from hpilot.partition.spec import Execution, IterSchedulerSpec, Resources, ResourceSize
from hpilot.partition.variables import Template

VERSION = 1
SECRET_ENV = "HPILOT_PARTITION_SECRET"


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
    nonce: str
    proof: str


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
            Shutdown, IterationStarted, IterationFinished, IterationsDropped, TaskSpec, Execution, Resources,
            ResourceSize, IterSchedulerSpec, Template)
_TYPES: Dict[str, Type[Any]] = {c.__name__: c for c in _CLASSES}
_NAMES: Dict[Type[Any], Tuple[str, ...]] = {c: tuple(f.name for f in fields(c)) for c in _CLASSES}
TOP = (Register, Leaving, ClientQuery, Registered, Refused, ClientAnswer, Heartbeat, Bye, Work, CancelJob, Shutdown,
       IterationStarted, IterationFinished, IterationsDropped)
Message = Union[Register, Leaving, ClientQuery, Registered, Refused, ClientAnswer, Heartbeat, Bye, Work, CancelJob,
                Shutdown, IterationStarted, IterationFinished, IterationsDropped]
_dumps = json.JSONEncoder(separators=(",", ":")).encode


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
        a, b = v["r"] if isinstance(v["r"], list) and len(v["r"]) == 2 else (None, None)
        if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or isinstance(b, bool):
            raise WireError("a range must be two whole numbers")
        return range(a, b)
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
        return cls(**kw)
    except TypeError as e:
        raise WireError(f"{name}: {e}") from None


def encode(msg: Message) -> bytes:
    if type(msg) not in TOP:
        raise WireError(f"not a message: {type(msg).__name__}")
    return _dumps(_out(msg)).encode()


def decode(frame: bytes) -> Message:
    """One frame -> one message, or WireError saying why not."""
    return _message(_json(frame))


def _json(frame: bytes) -> Any:
    try:
        return json.loads(frame)
    except (ValueError, UnicodeDecodeError) as e:
        raise WireError(f"not JSON: {e}") from None


def _message(raw: Any) -> Message:
    """A message in its generic form, built and checked."""
    msg = _in(raw)
    if type(msg) not in TOP:
        raise WireError(f"not a message: {type(msg).__name__}")
    _check(msg)
    return msg


# ---- reports in bulk ----
# A partition reports every iteration's start and end.  One frame per report, each a
# generic record, cost the governor more in decoding than in handling; so a loop
# pass's reports travel as one frame: a JSON array of positional records,
# ["s", ...IterationStarted fields] and ["f", ...IterationFinished fields] (anything
# else in its generic form).  Decoding checks each record's fields by position; a bad
# record is dropped with its reason and the rest of the batch is kept.

_STARTED = ("job", "iteration", "allocation", "wd", "scheduled", "started", "cores", "pid")
_FINISHED = ("job", "iteration", "exit_code", "started", "finished", "allocation", "wd", "cores", "reason",
             "canceled")
_NUM = (int, float)


def encode_batch(msgs: Sequence[Message]) -> bytes:
    """Many messages, one frame (a single message still gets its plain form)."""
    if len(msgs) == 1:
        return encode(msgs[0])
    items: List[Any] = []
    for m in msgs:
        if type(m) is IterationStarted:
            items.append(["s", m.job, m.iteration, m.allocation, m.wd, m.scheduled, m.started, m.cores, m.pid])
        elif type(m) is IterationFinished:
            rec = ["f", m.job, m.iteration, m.exit_code, m.started, m.finished, m.allocation, m.wd,
                   m.cores, m.reason, m.canceled]
            if m.stderr_tail is not None:  # a failed task's stderr: rare, so only then a field more
                rec.append(m.stderr_tail)
            items.append(rec)
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
        ok = (isinstance(alloc, str) and isinstance(wd, str) and isinstance(sched, _NUM)
              and isinstance(started, _NUM) and (pid is None or _whole(pid)))
        if ok and isinstance(job, str) and _whole(it) and _whole(cores):
            return IterationStarted(job, it, alloc, wd, sched, started, cores, pid)
        raise WireError(f"IterationStarted: bad field(s) in {str(item)[:200]}")
    if tag == "f" and len(vals) in (len(_FINISHED), len(_FINISHED) + 1):
        job, it, code, started, finished, alloc, wd, cores, reason, canceled = vals[:len(_FINISHED)]
        tail = vals[len(_FINISHED)] if len(vals) > len(_FINISHED) else None
        ok = (isinstance(alloc, str) and isinstance(wd, str) and isinstance(started, _NUM)
              and isinstance(finished, _NUM) and (reason is None or isinstance(reason, str))
              and isinstance(canceled, bool) and (tail is None or isinstance(tail, str)))
        if ok and isinstance(job, str) and _whole(it) and _whole(code) and _whole(cores):
            return IterationFinished(job, it, code, started, finished, alloc, wd, cores, reason, canceled, tail)
        raise WireError(f"IterationFinished: bad field(s) in {str(item)[:200]}")
    raise WireError(f"unknown compact record {str(item)[:80]}")


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(msg: Any) -> None:
    """The few field types that, if wrong, would break the receiver later rather than now."""
    for name in ("job", "id", "reason", "name", "stderr_tail"):
        if hasattr(msg, name) and not isinstance(getattr(msg, name), str) and not (
                name in ("reason", "stderr_tail") and getattr(msg, name) is None
                and isinstance(msg, IterationFinished)):
            raise WireError(f"{type(msg).__name__}.{name} must be a string")
    for name in ("payload", "response"):
        if hasattr(msg, name) and not isinstance(getattr(msg, name), str):
            raise WireError(f"{type(msg).__name__}.{name} must be a string (JSON text)")
    for name in ("iteration", "cores", "version", "pid", "exit_code", "qid"):
        val = getattr(msg, name, 0)
        if val is not None and (not isinstance(val, int) or isinstance(val, bool)):
            raise WireError(f"{type(msg).__name__}.{name} must be a whole number")
    its = getattr(msg, "iterations", None)
    if its is not None and not (isinstance(its, range) or (isinstance(its, tuple) and
                                                            all(isinstance(i, int) for i in its))):
        raise WireError(f"{type(msg).__name__}.iterations must be a range or whole numbers")


# ---- authentication ----


def proof(secret: str, pid: str, nonce: str) -> str:
    return hmac.new(secret.encode(), f"register|{VERSION}|{pid}|{nonce}".encode(), hashlib.sha256).hexdigest()


def register(secret: str, pid: str, host: str, os_pid: int, nodes: Tuple[Tuple[str, int], ...],
             tags: Tuple[str, ...]) -> Register:
    nonce = secrets.token_hex(16)
    return Register(VERSION, pid, host, os_pid, nodes, tags, nonce, proof(secret, pid, nonce))


def check_register(secret: str, msg: Register) -> Optional[str]:
    """None when the registration is genuine, else why not."""
    if msg.version != VERSION:
        return f"protocol version {msg.version}, this governor speaks {VERSION}"
    if not hmac.compare_digest(proof(secret, msg.id, msg.nonce), str(msg.proof)):
        return "bad proof: the partition does not know this run's partition secret"
    return None
