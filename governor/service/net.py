"""The service on the network: requests over ZeroMQ, events to subscribers.

Requests arrive on a ROUTER socket, which accepts QCG-PilotJob's REQ clients
unchanged (same JSON in, same JSON out) and serves many clients at once.  Events
leave on an XPUB socket; its welcome message tells a new subscriber that its
subscription is in place, so a client can subscribe, then query, then wait for
events without a window in which a finish could be missed.

Security: bound to loopback, requests are accepted as QCG-PilotJob accepts them.
Bound to any other address, every request must carry the run's secret (in the
request's ``"secret"`` field); one without it is refused and logged, and nothing
it asked for happens.  The secret is generated per run and kept in a 0600 file
in the run directory (and given to tasks in ``HPILOT_SECRET``).

Answers may be deferred: a partition manager's client port (``hpilot service
--parent ... --net``) forwards each request to its governor and answers when the
governor does (:meth:`NetInterface.process_deferred`, :meth:`NetInterface.answer`),
or with an error once a timeout passes or the partition exits; never a hang.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import zmq
from hpilot.launcher import safejson
from hpilot.launcher.wire import new_secret, write_secret

log = logging.getLogger("hpilot.net")

MAX_MESSAGE = 64 * 1024 * 1024  # a bigger frame closes that client's connection, not the service
# QCG's job descriptions nest about eight deep (attributes are the user's own); 64 is plenty
REQUEST_LIMITS = safejson.Limits(max_bytes=MAX_MESSAGE, max_depth=64, max_digits=100)
WELCOME = b"hpilot-welcome"
ADDRESS_FILE = "address"
SECRET_FILE = "secret"
ERROR = -1


@dataclass(frozen=True)
class Endpoints:
    address: str
    pub: Optional[str]
    secret_required: bool

    def to_json(self) -> Dict[str, Any]:
        return {"address": self.address, "pub": self.pub, "secret_required": self.secret_required,
                "pid": os.getpid()}


def is_loopback(iface: str) -> bool:
    return iface in ("localhost", "::1") or iface.startswith("127.")


def make_secret(run_dir_path: str) -> str:
    secret = new_secret()
    write_secret(os.path.join(run_dir_path, SECRET_FILE), secret)
    return secret


def _bind(sock: zmq.Socket, iface: str, port: Optional[int], lo: Optional[int], hi: Optional[int],
          what: str) -> str:
    host = f"[{iface}]" if ":" in iface else iface
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
    return f"tcp://{host}:{bound}"


class NetInterface:
    def __init__(self, iface: str, port: Optional[int], port_min: Optional[int], port_max: Optional[int],
                 pub_port: Optional[int], publish: bool, secret: str) -> None:
        self.ctx: zmq.Context = zmq.Context.instance()
        self.secret = secret
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self.pub: Optional[zmq.Socket] = None
        try:
            address = _bind(self.router, iface, port, port_min, port_max, "request")
            pub_address = None
            if publish:
                self.pub = self.ctx.socket(zmq.XPUB)
                self.pub.setsockopt(zmq.LINGER, 0)
                self.pub.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)
                self.pub.setsockopt(zmq.SNDHWM, 100_000)
                pub_address = _bind(self.pub, iface, pub_port, port_min, port_max, "event")
        except OSError:
            self.close()
            raise
        self.endpoints = Endpoints(address, pub_address, not is_loopback(iface))
        self.refused = 0
        self._token = 0
        # deferred requests: token -> (client identity, envelope, answer-by on the monotonic clock)
        self._pending: Dict[int, Tuple[bytes, List[bytes], float]] = {}

    def sockets(self) -> List[zmq.Socket]:
        return [s for s in (self.router, self.pub) if s is not None]

    def write_address(self, run_dir_path: str) -> str:
        path = os.path.join(run_dir_path, ADDRESS_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.endpoints.to_json(), f)
        os.replace(tmp, path)
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
            log.warning("malformed request (%d body frames) answered with an error", len(body))
            self._reply(identity, envelope, {"code": ERROR, "message": "a request is one JSON frame"})
            return
        try:
            payload = safejson.loads(body[0], REQUEST_LIMITS)
        except safejson.DecodeError as e:
            log.warning("malformed request answered with an error (%s)", e)
            self._reply(identity, envelope, {"code": ERROR, "message": f"the request is not valid JSON: {e}"})
            return
        if not self._authorized(payload):
            self.refused += 1
            log.warning("request without the run's secret refused: %.200s", _describe(payload))
            self._reply(identity, envelope, {"code": ERROR, "message": "unauthorized: this service requires the "
                                             "run's secret (the 'secret' field; see the run dir's secret file)"})
            return
        if isinstance(payload, dict):
            payload.pop("secret", None)
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

    def _authorized(self, payload: Any) -> bool:
        if not self.endpoints.secret_required:
            return True
        given = payload.get("secret") if isinstance(payload, dict) else None
        return isinstance(given, str) and hmac.compare_digest(given, self.secret)

    def _reply(self, identity: bytes, envelope: List[bytes], response: Dict[str, Any]) -> None:
        try:
            data = json.dumps(response, default=str).encode("utf-8")
        except (ValueError, TypeError, RecursionError) as e:  # a bug; the client still gets an answer
            log.error("a response cannot be encoded: %s", e)
            data = json.dumps({"code": ERROR, "message": "internal error: the response cannot be encoded"}).encode()
        try:
            self.router.send_multipart([identity, *envelope, data], zmq.NOBLOCK)
        except zmq.ZMQError as e:  # the client went away: nothing to do
            log.info("reply not delivered: %s", e)

    # ---- events ----

    def publish(self, event: Dict[str, Any]) -> None:
        if self.pub is None:
            return
        # a subscriber too slow to keep up loses events, never the service
        with contextlib.suppress(zmq.Again):
            self.pub.send_multipart([event["event"].encode(), json.dumps(event).encode()], zmq.NOBLOCK)

    def drain_subscriptions(self) -> None:
        """XPUB hands us (un)subscription messages; read them so they do not pile up."""
        if self.pub is None:
            return
        while True:
            try:
                self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def close(self) -> None:
        for s in (self.router, self.pub):
            if s is not None:
                s.close(0)


def _describe(payload: Any) -> str:
    if isinstance(payload, dict):
        return str({k: v for k, v in payload.items() if k != "secret"})
    return repr(payload)
