"""The service on the network: requests over ZeroMQ, events to subscribers.

Requests arrive on a ROUTER socket, which accepts QCG-PilotJob's REQ clients
unchanged (same JSON in, same JSON out) and serves many clients at once.  Events
leave on an XPUB socket; its welcome message tells a new subscriber that its
subscription is in place, so a client can subscribe, then query, then wait for
events without a window in which a finish could be missed.  The service sends the
welcome itself, once it has read the subscription (:meth:`NetInterface.drain_subscriptions`;
the protocol is :mod:`hpilot.governor.welcome`): ZeroMQ's own welcome
(``XPUB_WELCOME_MSG``) leaves when the connection is made, and the subscription can reach
the XPUB after it, so that a client which submitted on seeing it now and then missed its
job's first event.

Security: bound to loopback, requests are accepted as QCG-PilotJob accepts them
(plain JSON: QCG's clients have no keys; loopback is shared by the node's users).
Bound to any other address, both sockets are CURVE servers that admit only holders
of the run's client key (``client.key`` in the run directory, 0600; given to tasks
as ``HPILOT_CLIENT_KEY``): a stranger's connection is refused in the handshake, before
any of its frames is read, and it cannot read the events either
(:mod:`hpilot.launcher.curve`).  ``--net-iface`` takes an interface name or an
address; the address file names an address clients can connect to.

Answers may be deferred: a partition manager's client port (``hpilot service
--parent ... --net``) forwards each request to its governor and answers when the
governor does (:meth:`NetInterface.process_deferred`, :meth:`NetInterface.answer`),
or with an error once a timeout passes or the partition exits; never a hang.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import zmq
from hpilot.governor import welcome
from hpilot.governor.service import qcgevents
from hpilot.launcher import curve, safejson
from hpilot.launcher.private import write_private

log = logging.getLogger("hpilot.net")

MAX_MESSAGE = 64 * 1024 * 1024  # a bigger frame closes that client's connection, not the service
# QCG's job descriptions nest about eight deep (attributes are the user's own); 64 is plenty
REQUEST_LIMITS = safejson.Limits(max_bytes=MAX_MESSAGE, max_depth=64, max_digits=100)
ADDRESS_FILE = "address"
CLIENT_KEY_ENV = "HPILOT_CLIENT_KEY"  # tasks find the run's client key file here
ERROR = 1  # QCG-PilotJob's error code


@dataclass(frozen=True)
class Endpoints:
    address: str
    pub: Optional[str]
    server_key: Optional[str]  # the CURVE public key of the service (None: plain, on loopback)

    def to_json(self) -> Dict[str, Any]:
        return {"address": self.address, "pub": self.pub, "server_key": self.server_key, "pid": os.getpid(),
                "host": socket.gethostname()}  # the pid means something on this host only


def is_loopback(iface: str) -> bool:
    """Whether a (resolved) bind address is a loopback one."""
    if iface == "localhost":
        return True
    try:
        return ipaddress.ip_address(iface.strip("[]")).is_loopback
    except ValueError:
        return False


class IfaceError(OSError):
    """``--net-iface`` names neither an interface of this machine nor an address."""


def resolve_iface(iface: str) -> Tuple[str, str]:
    """``--net-iface`` (an interface name, an address, a host name, or ``*``/``0.0.0.0``) ->
    (the address to bind, the host clients connect to).

    An interface's first IPv4 address that is not a loopback one is taken (then any
    IPv4, then a global IPv6); binding every interface advertises this host's name."""
    if iface in ("*", "0.0.0.0", "::", ""):
        return ("0.0.0.0" if iface != "::" else "::"), socket.gethostname()
    try:
        ipaddress.ip_address(iface)
        return iface, iface
    except ValueError:
        pass
    import psutil

    addrs = psutil.net_if_addrs().get(iface)
    if addrs is not None:
        v4 = [a.address for a in addrs if a.family == socket.AF_INET]
        v6 = [a.address for a in addrs if a.family == socket.AF_INET6 and "%" not in a.address
              and not a.address.lower().startswith("fe80")]
        picks = [a for a in v4 if not is_loopback(a)] + v4 + v6
        if not picks:
            raise IfaceError(f"--net-iface {iface}: the interface has no address")
        return picks[0], picks[0]
    try:
        return str(socket.getaddrinfo(iface, None, socket.AF_INET)[0][4][0]), iface
    except (OSError, IndexError):
        known = ", ".join(sorted(psutil.net_if_addrs())) or "none"
        raise IfaceError(f"--net-iface {iface}: neither an interface of this machine ({known}) nor an "
                         "address") from None


def bind(sock: zmq.Socket, iface: str, shown: str, what: str, port: Optional[int] = None,
         lo: Optional[int] = None, hi: Optional[int] = None) -> str:
    """Bind ``sock`` to the address ``iface``; returns its address as clients connect to it (``shown``)."""
    return _bind(sock, iface, port, lo, hi, what, shown)


def _bind(sock: zmq.Socket, iface: str, port: Optional[int], lo: Optional[int], hi: Optional[int],
          what: str, shown: Optional[str] = None) -> str:
    host = f"[{iface}]" if ":" in iface else iface
    shown = shown or iface
    shown = f"[{shown}]" if ":" in shown else shown
    try:
        if port is not None:
            sock.bind(f"tcp://{host}:{port}")
            bound = port
        else:
            bound = sock.bind_to_random_port(f"tcp://{host}", min_port=lo or 20000, max_port=hi or 60000,
                                             max_tries=200)
    except zmq.ZMQError as e:
        want = f"port {port}" if port is not None else f"a port in {lo or 20000}-{hi or 60000}"
        raise OSError(f"cannot bind the {what} socket to {iface}, {want}: {e}") from None
    return f"tcp://{shown}:{bound}"


class NetInterface:
    def __init__(self, iface: str, port: Optional[int], port_min: Optional[int], port_max: Optional[int],
                 pub_port: Optional[int], publish: bool, keys: Optional[Callable[[], curve.Issued]] = None) -> None:
        """``keys`` gives the run's client keys; called only when the sockets are bound off loopback."""
        self.ctx: zmq.Context = zmq.Context.instance()
        bind_host, shown = resolve_iface(iface)
        self.keys = None if is_loopback(bind_host) else _required(keys, iface)()
        self.router = self._socket(zmq.ROUTER, "client")
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self.pub: Optional[zmq.Socket] = None
        try:
            address = _bind(self.router, bind_host, port, port_min, port_max, "request", shown)
            pub_address = None
            if publish:
                self.pub = self._socket(zmq.XPUB, "event")
                self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # every subscription, a welcome each
                self.pub.setsockopt(zmq.SNDHWM, 100_000)
                self.pub.setsockopt(zmq.MAXMSGSIZE, 4096)  # subscribers send subscriptions only
                pub_address = _bind(self.pub, bind_host, pub_port, port_min, port_max, "event", shown)
        except OSError:
            self.close()
            raise
        server_key = self.keys.server.public.decode() if self.keys is not None else None
        self.endpoints = Endpoints(address, pub_address, server_key)
        self.topics = qcgevents.Topics()  # QCG-PilotJob topics someone subscribed to
        self.instance_id: Optional[str] = None  # the "manager" of QCG-PilotJob's events
        self.refused = 0
        self._malformed = Tally("malformed request(s) answered with an error")
        self._undelivered = Tally("reply(ies) not delivered (the client went away)", logging.INFO)
        self._token = 0
        # deferred requests: token -> (client identity, envelope, answer-by on the monotonic clock)
        self._pending: Dict[int, Tuple[bytes, List[bytes], float]] = {}

    def _socket(self, kind: int, what: str) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if self.keys is not None:  # off loopback: the run's clients only, before any frame is read
            curve.serve(sock, self.keys.server, [self.keys.peer_public], what)
        return sock

    def sockets(self) -> List[zmq.Socket]:
        return [s for s in (self.router, self.pub) if s is not None]

    def write_address(self, run_dir_path: str) -> str:
        path = os.path.join(run_dir_path, ADDRESS_FILE)
        write_private(path, json.dumps(self.endpoints.to_json()))
        return path

    # ---- requests ----

    def process(self, handle: Callable[[Any], Dict[str, Any]]) -> int:
        """Answer every request waiting on the socket; returns how many."""
        return self._process(lambda payload, token: handle(payload), None)

    def process_deferred(self, handle: Callable[[Any, int], Optional[Dict[str, Any]]], timeout: float) -> int:
        """Take every request waiting on the socket; returns how many.

        ``handle(payload, token)`` returns the response now, or None: the response
        comes later through :meth:`answer` with that token, or :meth:`expire` answers
        with an error once ``timeout`` seconds pass.  Authorization and malformed
        requests are dealt with here, as in :meth:`process`."""
        return self._process(handle, timeout)

    def _process(self, handle: Callable[[Any, int], Optional[Dict[str, Any]]], timeout: Optional[float]) -> int:
        n = 0
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return n
            n += 1
            try:
                self._one(frames, handle, timeout)
            except Exception:  # the boundary: whatever a frame does, the next client is served
                log.exception("a request was dropped: error while reading or answering it")

    def answer(self, token: int, response: Dict[str, Any]) -> bool:
        """The response to a deferred request; False if it was already answered (timed out)."""
        pending = self._pending.pop(token, None)
        if pending is None:
            return False
        self._reply(pending[0], pending[1], response)
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def due_in(self) -> Optional[float]:
        """Seconds until the next deferred request times out (None: none waits)."""
        if not self._pending:
            return None
        return max(0.0, min(p[2] for p in self._pending.values()) - time.monotonic())

    def expire(self, message: str) -> int:
        """Answer the deferred requests whose time is up with an error saying ``message``."""
        now = time.monotonic()
        return self._fail([t for t, p in self._pending.items() if p[2] <= now], message)

    def fail_pending(self, message: str) -> int:
        """Answer every deferred request with an error (e.g. this process is exiting)."""
        return self._fail(list(self._pending), message)

    def _fail(self, tokens: List[int], message: str) -> int:
        for token in tokens:
            self.answer(token, {"code": ERROR, "message": message})
        if tokens:
            log.warning("%d request(s) answered with an error: %s", len(tokens), message)
        return len(tokens)

    def _one(self, frames: List[bytes], handle: Callable[[Any, int], Optional[Dict[str, Any]]],
             timeout: Optional[float]) -> None:
        # The envelope runs to the first empty frame: [b""] from a REQ client, with a
        # request id before it from a REQ_CORRELATE one; a DEALER may send none.
        identity, rest = frames[0], frames[1:]
        cut = rest.index(b"") + 1 if b"" in rest else 0
        envelope, body = rest[:cut], rest[cut:]
        if len(body) != 1:
            self._malformed.note(f"{len(body)} body frames")
            self._reply(identity, envelope, {"code": ERROR, "message": "a request is one JSON frame"})
            return
        try:
            payload = safejson.loads(body[0], REQUEST_LIMITS)
        except safejson.DecodeError as e:
            self._malformed.note(str(e))
            self._reply(identity, envelope, {"code": ERROR, "message": f"the request is not valid JSON: {e}"})
            return
        if isinstance(payload, dict):
            payload.pop("secret", None)  # an older client's bearer secret: never kept, never logged
        self._token += 1
        token = self._token
        try:
            response = handle(payload, token)
        except Exception:  # a bug must not take the service down for every other client
            log.exception("request failed: %.200s", _describe(payload))
            response = {"code": ERROR, "message": "internal error while handling the request (see service.log)"}
        if response is None and timeout is not None:
            self._pending[token] = (identity, envelope, time.monotonic() + timeout)
            return
        if response is None:
            response = {"code": ERROR, "message": "internal error: the request got no answer (see service.log)"}
        self._reply(identity, envelope, response)

    def _reply(self, identity: bytes, envelope: List[bytes], response: Dict[str, Any]) -> None:
        try:
            data = json.dumps(response, default=str).encode("utf-8")
        except (ValueError, TypeError, RecursionError) as e:  # a bug; the client still gets an answer
            log.error("a response cannot be encoded: %s", e)
            data = json.dumps({"code": ERROR, "message": "internal error: the response cannot be encoded"}).encode()
        try:
            self.router.send_multipart([identity, *envelope, data], zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the client went away: nothing to do
            self._undelivered.note(str(e))

    # ---- events ----

    def publish(self, event: Dict[str, Any]) -> None:
        """hpilot's event on its own topic, and QCG-PilotJob's frames for it (see :mod:`qcgevents`)."""
        if self.pub is None:
            return
        events = self.pub.getsockopt(zmq.EVENTS)
        if isinstance(events, int) and events & zmq.POLLIN:  # a subscription came in meanwhile
            self.drain_subscriptions()
        # a subscriber too slow to keep up loses events, never the service
        with contextlib.suppress(zmq.Again):
            if event["event"] != "nojobs":
                self.pub.send_multipart([event["event"].encode(), json.dumps(event).encode()], zmq.NOBLOCK)
            if self.topics:
                for frame in qcgevents.frames(event, self.instance_id, self.topics.wanted):
                    self.pub.send(frame.encode(), zmq.NOBLOCK)

    def drain_subscriptions(self) -> None:
        """XPUB hands us (un)subscription messages: they tell which QCG-PilotJob topics are
        wanted; a subscription read here is in place, so its welcome goes out now."""
        if self.pub is None:
            return
        welcomes: List[bytes] = []
        while True:
            try:
                msg = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.subscription(msg)
            topic = welcome.answer(msg)
            if topic is not None:
                welcomes.append(topic)
        for topic in welcomes:
            with contextlib.suppress(zmq.Again):
                self.pub.send(topic, zmq.NOBLOCK)

    def subscription(self, msg: bytes) -> None:
        self.topics.update(msg)

    def close(self) -> None:
        for s in (self.router, self.pub):
            if s is not None:
                s.close(0)


class Tally:
    """At most one log line a second for one kind of event, with how many happened since the
    last line: a flood of hostile frames must not flood the log (nor fill the disk)."""

    def __init__(self, what: str, level: int = logging.WARNING) -> None:
        self.what = what
        self.level = level
        self.count = 0
        self.total = 0
        self._logged = 0.0

    def note(self, last: str) -> None:
        self.count += 1
        self.total += 1
        now = time.monotonic()
        if now - self._logged >= 1.0:
            log.log(self.level, "%d %s (the last: %.200s)", self.count, self.what, last)
            self._logged = now
            self.count = 0


def _describe(payload: Any) -> str:
    """What the log says of a request: its kind and size, never its content (which may hold
    anything a user put in a job: a password in an environment variable, say)."""
    kind = payload.get("request") if isinstance(payload, dict) else None
    return f"a {kind[:40]!r} request" if isinstance(kind, str) else f"a request ({type(payload).__name__})"


def _required(keys: Optional[Callable[[], curve.Issued]], iface: str) -> Callable[[], curve.Issued]:
    if keys is None:
        raise OSError(f"--net-iface {iface}: off loopback the sockets need the run's CURVE keys")
    return keys
