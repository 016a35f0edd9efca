"""What the service and its node agents say to each other: frozen records and one codec.

One message is one ZeroMQ frame of JSON with a ``type`` field (DESIGN.md's "small typed
records"); several may travel in one multipart send.  :func:`decode` never trusts a
frame: anything that is not exactly a known record with the right fields raises
:class:`WireError`, which the receiver logs and drops, so a stray or hostile frame can
neither crash nor confuse either side.

Authentication is the transport's: the service's agent socket is a CURVE server that
admits only the holders of the run's agent key (``agent.key`` in the run directory, 0600,
read by the agent from ``--key-file``; see :mod:`hpilot.launcher.curve`).  Nothing an
unknown peer sends reaches the service, and CURVE's per-connection keys and nonces make
a captured Hello useless to replay.  The service still accepts nothing but a Hello from a
routing id it does not know.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Type, Union

from hpilot.launcher import safejson
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.launcher.frozen import fast_init

VERSION = 2  # 2: CURVE at the transport; Hello and Welcome carry no proof any more


class WireError(ValueError):
    """A frame that is not a valid message; the text says what is wrong with it."""


# ---- agent -> service ----


@fast_init
@dataclass(frozen=True)
class Hello:
    version: int
    node: str
    pid: int
    cpus: Tuple[int, ...]  # the CPUs this agent may bind tasks to


@fast_init
@dataclass(frozen=True)
class Started:
    task_id: str
    pid: int
    now: float


@fast_init
@dataclass(frozen=True)
class Exited:
    task_id: str
    exit_code: int
    started: float
    finished: float
    reason: Optional[str] = None
    pid: Optional[int] = None
    stderr_tail: Optional[str] = None  # a failed task's last stderr lines (streamed output only)
    unstarted: bool = False  # it could not be started

    @classmethod
    def of(cls, ex: TaskExit) -> Exited:
        return cls(ex.task_id, ex.exit_code, ex.started, ex.finished, ex.reason, ex.pid, ex.stderr_tail,
                   ex.unstarted)

    def to_exit(self) -> TaskExit:
        return TaskExit(self.task_id, self.exit_code, self.started, self.finished, self.reason, self.pid,
                        self.stderr_tail, self.unstarted)


# ---- service -> agent ----


@fast_init
@dataclass(frozen=True)
class Welcome:
    heartbeat: float  # seconds between heartbeats, each way


@fast_init
@dataclass(frozen=True)
class Launch:
    task_id: str
    argv: Tuple[str, ...]
    env: Optional[Dict[str, str]]
    wd: str
    stdin: Optional[str] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    cpus: Optional[Tuple[int, ...]] = None
    walltime: Optional[float] = None

    @classmethod
    def of(cls, r: LaunchRequest) -> Launch:
        return cls(r.task_id, r.argv, r.env, r.wd, r.stdin, r.stdout, r.stderr, r.cpus, r.walltime)

    def request(self, node: Optional[str]) -> LaunchRequest:
        return LaunchRequest(self.task_id, self.argv, self.env, self.wd, self.stdin, self.stdout, self.stderr,
                             self.cpus, self.walltime, node)


@fast_init
@dataclass(frozen=True)
class Kill:
    task_id: str
    reason: str


@fast_init
@dataclass(frozen=True)
class KillNow:
    pass


# ---- both ways ----


@fast_init
@dataclass(frozen=True)
class Heartbeat:
    now: float


@fast_init
@dataclass(frozen=True)
class Bye:
    reason: str


Message = Union[Hello, Started, Exited, Welcome, Launch, Kill, KillNow, Heartbeat, Bye]
_TYPES: Dict[str, Type[Any]] = {c.__name__: c for c in (Hello, Started, Exited, Welcome, Launch, Kill, KillNow,
                                                         Heartbeat, Bye)}
# field -> the JSON type(s) it may have (None always allowed where the default is None)
_KINDS: Dict[str, Tuple[type, ...]] = {
    "version": (int,), "pid": (int,), "exit_code": (int,), "node": (str,),
    "task_id": (str,), "reason": (str,), "stderr_tail": (str,), "wd": (str,), "stdin": (str,), "stdout": (str,),
    "stderr": (str,),
    "now": (int, float), "started": (int, float), "finished": (int, float), "heartbeat": (int, float),
    "walltime": (int, float), "argv": (list,), "cpus": (list,), "env": (dict,), "unstarted": (bool,),
}


_WHOLE = 2 ** 63  # no field here counts beyond 64 bits
# A Launch carries a task's whole environment; nothing here nests more than three deep.
LIMITS = safejson.Limits(max_bytes=64 * 1024 * 1024, max_depth=8)


def _bounded(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return -_WHOLE <= v < _WHOLE


_NAMES: Dict[Type[Any], Tuple[str, ...]] = {c: tuple(f.name for f in dataclasses.fields(c)) for c in _TYPES.values()}
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def encode(msg: Message) -> bytes:
    # shallow on purpose: dataclasses.asdict deep-copies a task's whole environment
    d = {name: getattr(msg, name) for name in _NAMES[type(msg)]}
    d["type"] = type(msg).__name__
    return _dumps(d).encode()


def decode(frame: bytes) -> Message:
    """One frame -> one message, or WireError saying why not (never another exception)."""
    try:
        d = safejson.loads(frame, LIMITS)
    except safejson.DecodeError as e:
        raise WireError(f"not JSON ({e})") from None
    if not isinstance(d, dict):
        raise WireError("not a JSON object")
    cls = _TYPES.get(str(d.pop("type", "")))
    if cls is None:
        raise WireError("no or unknown 'type'")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = set(d) - set(fields)
    if extra:
        raise WireError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(extra))}")
    for name, f in fields.items():
        if name not in d:
            if f.default is dataclasses.MISSING:
                raise WireError(f"{cls.__name__}: missing field {name}")
            continue
        value = d[name]
        if value is None and (f.default is None or name == "env"):  # env None: inherit
            continue
        kinds = _KINDS.get(name)
        if kinds is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            raise WireError(f"{cls.__name__}.{name}: wrong type {type(value).__name__}")
        if isinstance(value, (int, float)) and not _bounded(value):
            raise WireError(f"{cls.__name__}.{name}: out of range")
        if name == "argv":
            if not value or not all(isinstance(a, str) for a in value):
                raise WireError(f"{cls.__name__}.argv: a non-empty list of strings")
            d[name] = tuple(value)
        elif name == "cpus":
            if not all(type(c) is int and 0 <= c < _WHOLE for c in value):
                raise WireError(f"{cls.__name__}.cpus: a list of CPU ids")
            d[name] = tuple(value)
        elif name == "env" and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise WireError(f"{cls.__name__}.env: strings only")
    msg: Message = cls(**d)
    return msg


# ---- the greeting ----


def hello(node: str, pid: int, cpus: Tuple[int, ...]) -> Hello:
    return Hello(VERSION, node, pid, cpus)


def check_hello(h: Hello) -> Optional[str]:
    """None when the hello speaks our version; else why not."""
    if h.version != VERSION:
        return f"wire version {h.version}, this service speaks {VERSION} (mixed hpilot installations?)"
    return None
