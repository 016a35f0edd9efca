"""CURVE keys of a run, and the ZAP handler that admits only their holders.

Every socket hpilot binds off loopback, and every internal link (governor <->
partition, service <-> agent) wherever it is bound, is a CURVE server (ZeroMQ's
CurveZMQ: encryption and authentication inside libzmq).  A peer is admitted only if
its public key is one the socket allows: libzmq asks this process's ZAP handler
(:class:`Guard`, a thread answering on ``inproc://zeromq.zap.01``) during the
handshake, so a refused peer never gets a single frame to the application, and
nothing it sends is parsed.  CURVE also makes a captured connection useless: each
connection has its own short-term keys and every message its own nonce, so a
replayed or altered frame fails the handshake or the decryption.

Keys live in the run directory, one file per role, each 0600 (:class:`RunKeys`):

- ``server.key``: the run's server key pair (its secret half never leaves this file);
- ``client.key``, ``partition.key``, ``agent.key``: what a client, a partition manager
  and a node agent need: the server's public key and a key pair of their own, whose
  public half the matching socket allows.  Tasks get the client key (``HPILOT_CLIENT_KEY``),
  never the others, so a task cannot pose as a partition or an agent.

A key file is JSON: ``{"server": Z85, "public": Z85, "secret": Z85}`` (40 characters each).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterable, Optional

import zmq
from hpilot.launcher.private import write_private
from zmq.utils import z85

log = logging.getLogger("hpilot.curve")

SERVER = "server"
ROLES = ("client", "partition", "agent")
ZAP_ENDPOINT = "inproc://zeromq.zap.01"


class KeyFileError(ValueError):
    """A key file that cannot be read or is not one; the text says which file and why."""


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85, 40 bytes
    secret: bytes


@dataclass(frozen=True)
class PeerKeys:
    """What a peer (client, partition manager, agent) holds: its pair and the server's public key."""

    server: bytes
    public: bytes
    secret: bytes
    path: str = ""  # the file they came from ("" when made in memory)


@dataclass(frozen=True)
class Issued:
    """A server's side of one kind of link: its pair, and the key file its peers read."""

    server: KeyPair
    peer_public: bytes
    path: str


def available() -> bool:
    return bool(zmq.has("curve"))


def new_pair() -> KeyPair:
    if not available():
        raise KeyFileError("this pyzmq/libzmq has no CURVE support (install pyzmq's wheel, which has it)")
    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)


# ---- files ----


def _read_json(path: str) -> Dict[str, str]:
    try:
        with open(path, encoding="ascii") as f:
            data = json.loads(f.read(4096))
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read the key file: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"{path}: not an hpilot key file") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"{path}: not an hpilot key file")
    return data


def _key(data: Dict[str, str], name: str, path: str) -> bytes:
    value = data.get(name)
    if not isinstance(value, str) or len(value) != 40:
        raise KeyFileError(f"{path}: no valid '{name}' key (40 Z85 characters)")
    try:
        z85.decode(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise KeyFileError(f"{path}: the '{name}' key is not Z85 text") from None
    return value.encode("ascii")


def read_peer_keys(path: str) -> PeerKeys:
    data = _read_json(path)
    return PeerKeys(_key(data, "server", path), _key(data, "public", path), _key(data, "secret", path), path)


def read_pair(path: str) -> KeyPair:
    data = _read_json(path)
    return KeyPair(_key(data, "public", path), _key(data, "secret", path))


def write_pair(path: str, pair: KeyPair) -> None:
    write_private(path, json.dumps({"public": pair.public.decode(), "secret": pair.secret.decode()}) + "\n")


def write_peer_keys(path: str, server_public: bytes, pair: KeyPair) -> None:
    write_private(path, json.dumps({"server": server_public.decode(), "public": pair.public.decode(),
                                    "secret": pair.secret.decode()}) + "\n")


class RunKeys:
    """The keys of one run directory: the server pair, made at first use, and one peer file per role.

    :meth:`of` gives every part of a process the same object for one run dir, so the run
    has one server pair however many sockets serve it."""

    _runs: Dict[str, RunKeys] = {}

    def __init__(self, run_path: str, server: Optional[KeyPair] = None) -> None:
        self.run_path = run_path
        self._server = server
        self._issued: Dict[str, Issued] = {}

    @classmethod
    def of(cls, run_path: str) -> RunKeys:
        key = os.path.abspath(run_path)
        got = cls._runs.get(key)
        if got is None:
            got = cls._runs[key] = cls(key)
        return got

    def path(self, role: str) -> str:
        return os.path.join(self.run_path, f"{role}.key")

    @property
    def server(self) -> KeyPair:
        if self._server is None:
            self._server = new_pair()
            write_pair(self.path(SERVER), self._server)
        return self._server

    def issue(self, role: str, pair: Optional[KeyPair] = None) -> Issued:
        """The key file of ``role`` (made once per run): the peers' pair, given or new."""
        got = self._issued.get(role)
        if got is None:
            pair = pair or new_pair()
            write_peer_keys(self.path(role), self.server.public, pair)
            got = self._issued[role] = Issued(self.server, pair.public, self.path(role))
        return got


# ---- sockets ----


def serve(sock: zmq.Socket, server: KeyPair, allowed: Iterable[bytes], what: str) -> None:
    """Make ``sock`` (before it binds) a CURVE server that admits the holders of ``allowed`` only."""
    domain = Guard.of(sock.context).admit(allowed, what)
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, server.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, server.public)


def connect_with(sock: zmq.Socket, keys: PeerKeys) -> None:
    """Make ``sock`` (before it connects) a CURVE client holding ``keys``."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


HANDSHAKE_FAILED: Dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the handshake failed (the peer wants CURVE keys, or has another server key)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the handshake failed (a protocol error: CURVE on one side only?)",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the service refused this client's key",
}
MONITORED = zmq.EVENT_HANDSHAKE_SUCCEEDED | sum(HANDSHAKE_FAILED)


def handshake_failure(monitor: zmq.Socket) -> Optional[str]:
    """Read the waiting events of a socket monitor; why a handshake failed, if one did."""
    from zmq.utils.monitor import recv_monitor_message

    why = None
    while monitor.poll(0):
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except (zmq.ZMQError, ValueError):
            break
        if event["event"] in HANDSHAKE_FAILED and why is None:
            why = HANDSHAKE_FAILED[event["event"]]
    return why


class Guard:
    """The ZAP handler of one ZeroMQ context: one daemon thread, one allowed-key set per socket.

    Each CURVE server socket gets its own ZAP domain naming its set, so one process can
    hold sockets with different peers (clients, partitions, agents).  A socket with a
    domain this guard does not know is refused everything.  Refusals are logged, at
    most once a second with their count, so a flood of strangers cannot flood the log."""

    _guards: Dict[int, Guard] = {}
    _lock = threading.Lock()

    def __init__(self, ctx: zmq.Context) -> None:
        self.ctx = ctx
        self._domains: Dict[str, FrozenSet[bytes]] = {}
        self._names: Dict[str, str] = {}
        self._ids = itertools.count(1)
        self._refused = 0
        self._logged = 0.0
        self.refused_total = 0
        self._sock = ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(ZAP_ENDPOINT)
        self._thread = threading.Thread(target=self._run, name="hpilot-zap", daemon=True)
        self._thread.start()

    @classmethod
    def of(cls, ctx: zmq.Context) -> Guard:
        with cls._lock:
            guard = cls._guards.get(id(ctx))
            if guard is None or guard.ctx is not ctx:
                guard = cls._guards[id(ctx)] = cls(ctx)
            return guard

    def admit(self, allowed: Iterable[bytes], what: str) -> str:
        """A new ZAP domain whose peers must hold one of the ``allowed`` public keys (Z85)."""
        keys = frozenset(z85.decode(k) for k in allowed)
        domain = f"hpilot-{os.getpid()}-{next(self._ids)}"
        self._domains[domain] = keys
        self._names[domain] = what
        return domain

    def _run(self) -> None:
        while True:
            try:
                frames = self._sock.recv_multipart()
            except zmq.ContextTerminated:
                break
            except zmq.ZMQError:
                continue
            try:
                self._sock.send_multipart(self._answer(frames))
            except zmq.ContextTerminated:
                break
            except zmq.ZMQError as e:
                log.warning("ZAP answer not sent: %s", e)
        with contextlib.suppress(zmq.ZMQError):
            self._sock.close(0)

    def _answer(self, frames: list) -> list:
        """ZAP (RFC 27): version, request id, domain, address, identity, mechanism, credentials."""
        if len(frames) < 6:
            return [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"malformed ZAP request", b"", b""]
        request_id, domain, address, mechanism = frames[1], frames[2].decode("ascii", "replace"), frames[3], frames[5]
        keys = self._domains.get(domain)
        if keys is not None and mechanism == b"CURVE" and len(frames) >= 7 and frames[6] in keys:
            return [b"1.0", request_id, b"200", b"OK", b"hpilot", b""]
        self._refuse(domain, address.decode("ascii", "replace"), mechanism.decode("ascii", "replace"))
        return [b"1.0", request_id, b"400", b"unknown key", b"", b""]

    def _refuse(self, domain: str, address: str, mechanism: str) -> None:
        self._refused += 1
        self.refused_total += 1
        now = time.monotonic()
        if now - self._logged >= 1.0:
            log.warning("refused %d connection(s) without an allowed key on the %s socket (last from %s, %s)",
                        self._refused, self._names.get(domain, domain), address or "?", mechanism)
            self._logged = now
            self._refused = 0
