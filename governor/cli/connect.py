"""How a client command finds a running hpilot and talks to it.

Kept apart from the Python API (``api/manager.py``) so that ``hpilot status`` imports
only ZeroMQ and this file: a client command starts within a few times a bare Python.

Where the service is, first match wins:

1. ``--address``: a ZeroMQ address (``tcp://host:port``, ``ipc://path``), or a
   directory: a working directory (its newest run) or a run dir;
2. ``HPILOT_ADDRESS`` (or QCG-PilotJob's ``QCG_PM_ZMQ_ADDRESS``);
3. the newest run started in the current directory (``.hpilot/latest``): its local
   sockets (every run has them, see ``service/local.py``) when it runs on this host,
   else its network address (``--net``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Optional

import zmq
from hpilot.governor import welcome
from hpilot.governor.errors import UserError

AUX = ".hpilot"
KEY_ENV = "HPILOT_CLIENT_KEY"  # the run's client key file, needed by a service off loopback (CURVE)
KEY_FILE = "client.key"


class ServiceGone(UserError):
    """The service ended while we waited for its answer (a run that finished, say)."""


class Target:
    """Where a service is (a plain class: no dataclasses import at start-up)."""

    def __init__(self, address: str, pub: Optional[str] = None, key_file: Optional[str] = None,
                 run_dir: Optional[str] = None, pid: Optional[int] = None) -> None:
        self.address = address
        self.pub = pub
        self.key_file = key_file
        self.run_dir = run_dir
        self.pid = pid  # known when found from a run dir on this host: a dead one is not waited on


def find(address: Optional[str]) -> Target:
    if address and os.path.isdir(address):
        return _in_dir(address)
    if address is None:
        address = os.environ.get("HPILOT_ADDRESS") or os.environ.get("QCG_PM_ZMQ_ADDRESS")
        if address is not None:
            return Target(_normalize(address), key_file=os.environ.get(KEY_ENV))
        return _in_dir(".")
    return Target(_normalize(address), key_file=os.environ.get(KEY_ENV))


def _normalize(address: str) -> str:
    """``[proto://]host[:port]`` with QCG-PilotJob's defaults (tcp, 5555)."""
    proto, sep, rest = address.partition("://")
    if not sep:
        proto, rest = "tcp", address
    if proto == "tcp" and ":" not in rest.rsplit("]", 1)[-1]:
        rest += ":5555"
    return f"{proto}://{rest}"


def _run_dir(path: str) -> str:
    """A run dir as given, or a working directory's newest run."""
    if os.path.exists(os.path.join(path, "journal")) or os.path.exists(os.path.join(path, "service.log")):
        return os.path.abspath(path)
    return os.path.realpath(os.path.join(path, AUX, "latest"))


def _in_dir(path: str) -> Target:
    run_dir = _run_dir(path)
    where = "this directory" if path == "." else path
    if not os.path.isdir(run_dir):
        raise UserError(f"no running hpilot service found: no hpilot run in {where} (no {AUX}/latest); run the "
                        "command in the working directory of a run, or give --address")
    local = _read_json(os.path.join(run_dir, "local"))
    net = _read_json(os.path.join(run_dir, "address"))
    here = os.uname().nodename  # socket.gethostname() on Linux, without importing socket
    if local is not None and local.get("host") == here and _alive(local.get("pid")):
        return Target(local["address"], local.get("pub"), None, run_dir, local.get("pid"))
    if net is not None and (net.get("host", here) != here or _alive(net.get("pid"))):
        pid = net.get("pid") if net.get("host", here) == here else None
        key = os.path.join(run_dir, KEY_FILE) if net.get("server_key") else os.environ.get(KEY_ENV)
        return Target(net["address"], net.get("pub"), key, run_dir, pid)
    if local is not None and local.get("host") != here:
        raise UserError(f"the newest run in {where} runs on host {local.get('host')}: run the command there, "
                        "or start the run with --net and give --address")
    raise UserError(f"no running hpilot service found: the newest run in {where} has ended (see {run_dir}/"
                    f"final_status, or `hpilot report {path}`)")


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("address"), str) else None


def _alive(pid: Any) -> bool:
    """The process runs (a zombie, ended but not yet reaped by its parent, does not)."""
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc: kill(0) is all we know


def _safejson() -> Any:
    """The limited JSON reader (as governor/api/manager.py reads answers and events); imported
    when a first answer comes, so that ``--help`` imports no more than it needs."""
    from hpilot.launcher import safejson

    return safejson


def is_loopback(address: str) -> bool:
    """ipc:// and loopback tcp:// speak plain JSON; anywhere else is CURVE with the run's client key."""
    import ipaddress

    proto, _, rest = address.partition("://")
    if proto != "tcp":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Client:
    """One REQ socket to the service; answers are checked, errors become UserError."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self.ctx: zmq.Context = zmq.Context.instance()
        self.req = self.ctx.socket(zmq.REQ)
        self.req.setsockopt(zmq.LINGER, 0)
        self.req.setsockopt(zmq.REQ_RELAXED, 1)
        self.req.setsockopt(zmq.REQ_CORRELATE, 1)
        self.keys: Any = None
        self.monitor: Optional[zmq.Socket] = None
        if not is_loopback(target.address):
            self.keys = self._keys(target)
            self._secure(self.req)
            self.monitor = self.req.get_monitor_socket(self._curve().MONITORED)  # a refused key: said at once
        self.req.connect(target.address)
        self.sub: Optional[zmq.Socket] = None

    @staticmethod
    def _curve() -> Any:
        from hpilot.launcher import curve

        return curve

    def _keys(self, target: Target) -> Any:
        if not target.key_file:
            raise UserError(f"{target.address}: a service off loopback needs the run's client key: set {KEY_ENV} "
                            f"to its <run dir>/{KEY_FILE}, or run the command in the run's working directory")
        curve = self._curve()
        try:
            return curve.read_peer_keys(target.key_file)
        except curve.KeyFileError as e:
            raise UserError(str(e)) from None

    def _secure(self, sock: zmq.Socket) -> None:
        if self.keys is not None:
            self._curve().connect_with(sock, self.keys)

    def call(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """The whole answer (``code``, ``message``, ``data``); no answer in time is a UserError."""
        self.req.send(json.dumps(payload).encode())
        deadline = time.monotonic() + self.timeout
        while not self.req.poll(200):
            if self.monitor is not None and self.monitor.poll(0):
                why = self._curve().handshake_failure(self.monitor)
                if why is not None:
                    raise UserError(f"{self.target.address}: {why} (the key {self.target.key_file} is not this "
                                    "service's client key)")
            if self.target.pid is not None and not _alive(self.target.pid):
                raise ServiceGone(f"the service at {self.target.address} has ended")
            if time.monotonic() > deadline:
                raise UserError(f"no answer from the service at {self.target.address} within {self.timeout:.0f}s "
                                "(is it still running?)")
        safejson = _safejson()
        try:  # within limits: whatever answers on that address cannot crash the client
            answer = safejson.loads(self.req.recv(), safejson.Limits(max_bytes=1 << 30, max_depth=64))
        except safejson.DecodeError as e:
            raise UserError(f"the service at {self.target.address} answered something that is not JSON: {e}") from None
        if not isinstance(answer, dict):
            raise UserError(f"the service at {self.target.address} answered something that is not an object")
        return answer

    def data(self, payload: Dict[str, Any]) -> Any:
        """The answer's ``data``; a refused request is a UserError with the service's message."""
        answer = self.call(payload)
        if answer.get("code") != 0:
            raise UserError(str(answer.get("message") or f"the request was refused: {answer}"))
        return answer.get("data")

    def subscribe(self, topics: List[bytes], timeout: float = 5.0) -> bool:
        """Subscribe to the service's events; True once the subscription is live (the XPUB welcome)."""
        pub = self.target.pub
        if pub is None:
            status = self.call({"request": "status"})
            pub = (status.get("data") or {}).get("System", {}).get("Pubaddress")
        if not pub:
            return False
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        self._secure(sub)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.connect(pub)
        if not welcome.wait(sub, welcome.subscribe(sub, topics), timeout):  # the subscription is in place
            sub.close(0)
            return False
        self.sub = sub
        return True

    def events(self, timeout: float) -> List[Dict[str, Any]]:
        """Events that arrive within ``timeout`` seconds (all that are queued, at least one if any)."""
        out: List[Dict[str, Any]] = []
        if self.sub is None or not self.sub.poll(int(timeout * 1000)):
            return out
        while True:
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            if len(frames) >= 2:
                safejson = _safejson()
                try:
                    ev = safejson.loads(frames[-1], safejson.Limits(max_bytes=1 << 20, max_depth=16))
                except safejson.DecodeError:
                    continue  # a malformed event is dropped, never fatal
                if isinstance(ev, dict):
                    out.append(ev)

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close(0)
        self.req.close(0)
        if self.sub is not None:
            self.sub.close(0)
