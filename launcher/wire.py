"""What the service and its node agents say to each other: frozen records and one codec.

One message is one ZeroMQ frame of JSON with a ``type`` field (DESIGN.md's "small typed
records"); several may travel in one multipart send.  :func:`decode` never trusts a
frame: anything that is not exactly a known record with the right fields raises
:class:`WireError`, which the receiver logs and drops, so a stray or hostile frame can
neither crash nor confuse either side.

Authentication uses the run's secret (a 0600 file in the run directory that both sides
can read; it never appears on a command line): the agent's :class:`Hello` carries
``HMAC(secret, hello|version|node|nonce)`` and the service answers with
``HMAC(secret, welcome|nonce)``, so each side proves it knows the secret without
sending it.  The service accepts nothing but a valid Hello from a routing id it does
not know, and agents pick random, unguessable routing ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import os
import secrets
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Type, Union

from hpilot.launcher import safejson
from hpilot.launcher.core import LaunchRequest, TaskExit

VERSION = 1


class WireError(ValueError):
    """A frame that is not a valid message; the text says what is wrong with it."""


# ---- agent -> service ----


@dataclass(frozen=True)
class Hello:
    version: int
    node: str
    pid: int
    cpus: Tuple[int, ...]  # the CPUs this agent may bind tasks to
    nonce: str
    proof: str


@dataclass(frozen=True)
class Started:
    task_id: str
    pid: int
    now: float


@dataclass(frozen=True)
class Exited:
    task_id: str
    exit_code: int
    started: float
    finished: float
    reason: Optional[str] = None
    pid: Optional[int] = None
    stderr_tail: Optional[str] = None  # a failed task's last stderr lines (streamed output only)

    @classmethod
    def of(cls, ex: TaskExit) -> Exited:
        return cls(ex.task_id, ex.exit_code, ex.started, ex.finished, ex.reason, ex.pid, ex.stderr_tail)

    def to_exit(self) -> TaskExit:
        return TaskExit(self.task_id, self.exit_code, self.started, self.finished, self.reason, self.pid,
                        self.stderr_tail)


# ---- service -> agent ----


@dataclass(frozen=True)
class Welcome:
    proof: str
    heartbeat: float  # seconds between heartbeats, each way


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


@dataclass(frozen=True)
class Kill:
    task_id: str
    reason: str


@dataclass(frozen=True)
class KillNow:
    pass


# ---- both ways ----


@dataclass(frozen=True)
class Heartbeat:
    now: float


@dataclass(frozen=True)
class Bye:
    reason: str


Message = Union[Hello, Started, Exited, Welcome, Launch, Kill, KillNow, Heartbeat, Bye]
_TYPES: Dict[str, Type[Any]] = {c.__name__: c for c in (Hello, Started, Exited, Welcome, Launch, Kill, KillNow,
                                                         Heartbeat, Bye)}
# field -> the JSON type(s) it may have (None always allowed where the default is None)
_KINDS: Dict[str, Tuple[type, ...]] = {
    "version": (int,), "pid": (int,), "exit_code": (int,), "node": (str,), "nonce": (str,), "proof": (str,),
    "task_id": (str,), "reason": (str,), "stderr_tail": (str,), "wd": (str,), "stdin": (str,), "stdout": (str,),
    "stderr": (str,),
    "now": (int, float), "started": (int, float), "finished": (int, float), "heartbeat": (int, float),
    "walltime": (int, float), "argv": (list,), "cpus": (list,), "env": (dict,),
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
        if kinds is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
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


# ---- the secret ----


def new_secret() -> str:
    return secrets.token_hex(32)


def write_secret(path: str, secret: str) -> None:
    """Create the secret file readable by its owner only (0600 from the start, not chmod later).

    A resumed run writes a new secret in the same run dir: the old file is replaced, not
    reopened, so its mode can never have been widened in between."""
    tmp = f"{path}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.replace(tmp, path)


def read_secret(path: str) -> str:
    with open(path, encoding="ascii") as f:
        secret = f.read().strip()
    if len(secret) < 32:
        raise ValueError(f"{path}: too short to be a secret")
    return secret


def _mac(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def hello(secret: str, node: str, pid: int, cpus: Tuple[int, ...]) -> Hello:
    nonce = secrets.token_hex(16)
    return Hello(VERSION, node, pid, cpus, nonce, _mac(secret, f"hello|{VERSION}|{node}|{nonce}"))


def check_hello(secret: str, h: Hello) -> Optional[str]:
    """None when the hello is genuine and speaks our version; else why not."""
    if not hmac.compare_digest(h.proof, _mac(secret, f"hello|{h.version}|{h.node}|{h.nonce}")):
        return "bad proof of the run's secret"
    if h.version != VERSION:
        return f"wire version {h.version}, this service speaks {VERSION} (mixed hpilot installations?)"
    return None


def welcome(secret: str, h: Hello, heartbeat: float) -> Welcome:
    return Welcome(_mac(secret, f"welcome|{h.nonce}"), heartbeat)


def check_welcome(secret: str, h: Hello, w: Welcome) -> bool:
    return hmac.compare_digest(w.proof, _mac(secret, f"welcome|{h.nonce}"))
