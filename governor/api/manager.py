"""The Python API: ``Manager`` talks to a running service, ``LocalManager`` starts one.

Same calls as QCG-PilotJob's API.  Waiting is driven by the service's published
events: the manager subscribes when it connects and waits for the XPUB welcome,
so its subscription is in place before any wait; a wait then drains what was
queued, asks for the current states, and sleeps on the event socket.  A status
query every ``safety_poll`` seconds (default 30) only guards against a lost
event; it is not how finishes are noticed.  Plain blocking ZeroMQ, no asyncio:
it works the same in a script, a thread and a Jupyter notebook.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import logging
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import zmq
from hpilot.governor import welcome
from hpilot.governor.api.jobs import (
    ConnectionError,
    InternalError,
    JobInfo,
    JobNotDefinedError,
    Jobs,
    ServiceError,
    TimeoutElapsed,
)
from hpilot.launcher import curve, safejson

log = logging.getLogger("hpilot.api")

FINAL = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")
CLIENT_KEY_ENV = "HPILOT_CLIENT_KEY"
CLIENT_KEY_FILE = "client.key"
# what the service sends back: answers may list every job, events are small
ANSWER_LIMITS = safejson.Limits(max_bytes=1 << 30, max_depth=64)
EVENT_LIMITS = safejson.Limits(max_bytes=1 << 20, max_depth=16)


def find_service(wd: str = ".") -> Optional[Dict[str, Any]]:
    """The address file of the newest service started in ``wd`` that still runs.

    A service killed with -9 leaves its address file behind; its pid tells, when it runs on
    this host (from another node, on a shared file system, the address file is taken as it is)."""
    path = os.path.join(wd, ".hpilot", "latest", "address")
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    pid = info.get("pid")
    here = info.get("host") in (None, socket.gethostname())
    if here and isinstance(pid, int) and not _alive(pid):
        return None
    info["run_dir"] = os.path.dirname(os.path.realpath(path))
    info["key_file"] = os.path.join(info["run_dir"], CLIENT_KEY_FILE) if info.get("server_key") else None
    return info


def parse_event(frames: List[bytes]) -> Optional[Dict[str, Any]]:
    """A published event ([topic, JSON object]) as a dict, or None for anything else."""
    if len(frames) != 2:
        return None
    try:
        ev = safejson.loads(frames[1], EVENT_LIMITS)
    except safejson.DecodeError:
        return None
    if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
        return None
    if ev["event"] == "job" and not (isinstance(ev.get("job"), str) and isinstance(ev.get("state"), str)):
        return None
    return ev


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_keys(keys: Union[None, str, curve.PeerKeys], found: Optional[Dict[str, Any]]) -> Optional[curve.PeerKeys]:
    """The client keys to use: given (a key file's path, or keys), else ``HPILOT_CLIENT_KEY``,
    else the client key of the service found in the working directory; None if none."""
    if isinstance(keys, curve.PeerKeys):
        return keys
    path = keys or os.environ.get(CLIENT_KEY_ENV) or (found.get("key_file") if found else None)
    if not path:
        return None
    try:
        return curve.read_peer_keys(path)
    except curve.KeyFileError as e:
        raise ConnectionError(str(e)) from None


def is_loopback_address(address: str) -> bool:
    """Whether ``tcp://HOST:PORT`` names a loopback host (where services speak plain JSON)."""
    host = address.partition("://")[2].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalize_address(address: str) -> str:
    """``[proto://]host[:port]`` with QCG-PilotJob's defaults (tcp, 5555)."""
    proto, sep, rest = address.partition("://")
    if not sep:
        proto, rest = "tcp", address
    if proto == "tcp" and ":" not in rest.rsplit("]", 1)[-1]:
        rest += ":5555"
    return f"{proto}://{rest}"


class Manager:
    DEFAULT_ADDRESS_ENV = "QCG_PM_ZMQ_ADDRESS"
    DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
    DEFAULT_PROTO = "tcp"
    DEFAULT_PORT = "5555"
    DEFAULT_POLL_DELAY = 5
    DEFAULT_PUB_TIMEOUT = 300

    def __init__(self, address: Optional[str] = None, cfg: Optional[Dict[str, Any]] = None,
                 keys: Union[None, str, curve.PeerKeys] = None) -> None:
        """``keys``: the run's client key file (``<run dir>/client.key``) or keys, needed for a
        service bound off loopback; by default ``HPILOT_CLIENT_KEY``, or the key of the service
        found in the working directory."""
        cfg = dict(cfg or {})
        found = None
        if address is None:
            address = os.environ.get("HPILOT_ADDRESS") or os.environ.get(self.DEFAULT_ADDRESS_ENV)
        if address is None:
            found = find_service()
            address = found["address"] if found else self.DEFAULT_ADDRESS
        self.address = normalize_address(address)
        found_keys = find_keys(keys, found)
        # loopback speaks plain JSON (QCG's clients have no keys); anywhere else is CURVE
        self.keys = None if is_loopback_address(self.address) else found_keys
        self.request_timeout = float(cfg.get("request_timeout", 600))
        self.safety_poll = float(cfg.get("safety_poll", 30))
        self.poll_delay = float(cfg.get("poll_delay", 0.5))  # only without events (--disable-pub)
        self._ctx: zmq.Context = zmq.Context.instance()
        self._req: Optional[zmq.Socket] = None
        self._monitor: Optional[zmq.Socket] = None
        self._sub: Optional[zmq.Socket] = None
        self._connect()
        pub = found.get("pub") if found else None
        if pub is None:
            pub = self.system_status().get("System", {}).get("Pubaddress")
        self.pub_address = pub
        if pub and cfg.get("subscribe", True):
            self._subscribe(pub, float(cfg.get("subscribe_timeout", 5)))

    # ---- connection ----

    def _connect(self) -> None:
        self._req = self._ctx.socket(zmq.REQ)
        self._req.setsockopt(zmq.LINGER, 0)
        self._req.setsockopt(zmq.REQ_RELAXED, 1)
        self._req.setsockopt(zmq.REQ_CORRELATE, 1)
        self._secure(self._req)
        # a refused key or a plain client at a CURVE service shows as a failed handshake: say so at once
        self._monitor = self._req.get_monitor_socket(curve.MONITORED)
        self._req.connect(self.address)

    def _secure(self, sock: zmq.Socket) -> None:
        if self.keys is not None:
            curve.connect_with(sock, self.keys)

    def event_socket(self, pub: str, timeout: float) -> Optional[zmq.Socket]:
        """A SUB socket on the service's job events, once its subscription is in place (its
        welcome came: :mod:`welcome`); None if no welcome came within ``timeout`` seconds."""
        sub = self._ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.setsockopt(zmq.MAXMSGSIZE, EVENT_LIMITS.max_bytes)
        self._secure(sub)
        sub.connect(pub)
        if welcome.wait(sub, welcome.subscribe(sub, [b"job"]), timeout):
            return sub
        sub.close(0)
        return None

    def _subscribe(self, pub: str, timeout: float) -> None:
        sub = self.event_socket(pub, timeout)
        if sub is not None:
            self._sub = sub
        else:
            log.warning("no event welcome from %s in %ss; waits fall back to status queries", pub, timeout)

    def send_request(self, request: Dict[str, Any], per_job: bool = False) -> Dict[str, Any]:
        """Send any request and return the validated response (code 0), else raise.

        ``per_job``: an answer that failed only because of some names (an unknown job; the
        service, as QCG-PilotJob's, fails the whole request) is returned with its per-job
        entries, so that the other names are still answered."""
        if self._req is None:
            raise ConnectionError("not connected (finish() or cleanup() was called)")
        try:
            self._req.send(json.dumps(request).encode())
            self._wait_answer()
            response = safejson.loads(self._req.recv(), ANSWER_LIMITS)
        except zmq.ZMQError as e:
            raise ConnectionError(f"{self.address}: {e}") from None
        except safejson.DecodeError as e:
            raise InternalError(f"the service's answer is not JSON: {e}") from None
        if not isinstance(response, dict) or not isinstance(response.get("code"), int):
            raise InternalError(f"unexpected answer: {response!r:.200}")
        if response["code"] != 0:
            if per_job and isinstance(response.get("data"), dict) and "jobs" in response["data"]:
                return response
            raise ConnectionError(response.get("message", "request failed"))
        return response

    def _wait_answer(self) -> None:
        assert self._req is not None
        poller = zmq.Poller()
        poller.register(self._req, zmq.POLLIN)
        if self._monitor is not None:
            poller.register(self._monitor, zmq.POLLIN)
        deadline = time.monotonic() + self.request_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ConnectionError(f"no answer from {self.address} in {self.request_timeout:g}s")
            ready = dict(poller.poll(int(left * 1000) + 1))
            if self._req in ready:
                return
            why = curve.handshake_failure(self._monitor) if self._monitor is not None and self._monitor in ready \
                else None
            if why is not None:
                raise ConnectionError(f"{self.address}: {why} ({self._key_hint()})")

    def _key_hint(self) -> str:
        if self.keys is None:
            return (f"a service off loopback needs the run's client key: give keys=, set {CLIENT_KEY_ENV} to its "
                    "<run dir>/client.key, or work in the service's wd")
        return f"the key {self.keys.path or '(given)'} is not this service's client key"

    def _data(self, request: Dict[str, Any], per_job: bool = False) -> Dict[str, Any]:
        data = self.send_request(request, per_job).get("data")
        if not isinstance(data, dict):
            raise InternalError(f"{request.get('request')}: the answer has no data")
        return data

    def _all_done(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """cancelJob, removeJob: the service answers code 0 and lists names it could not act
        on in ``data.errors`` (QCG-PilotJob's shape); hpilot's API raises on any of them."""
        data = self._data(request)
        errors = data.get("errors")
        if errors:
            raise ConnectionError("; ".join(f"{name}: {why}" for name, why in errors.items()))
        return data

    # ---- the requests ----

    def resources(self) -> Dict[str, Any]:
        return self._data({"request": "resourcesInfo"})

    def system_status(self) -> Dict[str, Any]:
        return self._data({"request": "status"})

    def submit(self, jobs: Union[Jobs, List[Dict[str, Any]]]) -> List[str]:
        job_list = jobs.ordered_jobs() if isinstance(jobs, Jobs) else list(jobs)
        return list(self._data({"request": "submit", "jobs": job_list}).get("jobs", []))

    def list(self) -> Dict[str, Any]:
        return dict(self._data({"request": "listJobs"}).get("jobs", {}))

    def status(self, names: Union[str, Iterable[str]]) -> Dict[str, Any]:
        return self._data({"request": "jobStatus", "jobNames": _names(names)}, per_job=True)

    def info(self, names: Union[str, Iterable[str]], **kwargs: Any) -> Dict[str, Any]:
        req: Dict[str, Any] = {"request": "jobInfo", "jobNames": _names(names)}
        if kwargs.get("withChilds"):
            req["params"] = {"withChilds": True}
        return self._data(req, per_job=True)

    def info_parsed(self, names: Union[str, Iterable[str]], **kwargs: Any) -> Dict[str, JobInfo]:
        jobs = self.info(names, **kwargs).get("jobs", {})
        out = {}
        for name, entry in jobs.items():
            if entry.get("status") != 0:
                raise JobNotDefinedError(entry.get("message", f"job {name} not found"))
            out[name] = JobInfo.from_job(entry["data"])
        return out

    def cancel(self, names: Union[str, Iterable[str]]) -> Dict[str, Any]:
        return self._all_done({"request": "cancelJob", "jobNames": _names(names)})

    def remove(self, names: Union[str, Iterable[str]]) -> Dict[str, Any]:
        return self._all_done({"request": "removeJob", "jobNames": _names(names)})

    def finish(self) -> None:
        try:
            self.send_request({"request": "finish"})
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        if self._req is not None and self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._req.disable_monitor()
        for sock in (self._monitor, self._req, self._sub):
            if sock is not None:
                sock.close(0)
        self._req = self._sub = self._monitor = None

    @staticmethod
    def is_status_finished(status: str) -> bool:
        return status in FINAL

    # ---- waiting, driven by events ----

    def _states(self, names: Iterable[str]) -> Dict[str, str]:
        jobs = self.status(list(names)).get("jobs", {})
        out = {}
        for name, entry in jobs.items():
            if entry.get("status") != 0:
                raise JobNotDefinedError(entry.get("message", f"job {name} not found"))
            out[name] = entry["data"]["status"]
        return out

    def _events(self, deadline: Optional[float]) -> List[Dict[str, Any]]:
        """Events received until one arrives or a poll period passes (then: [])."""
        wait = self.safety_poll if self._sub is not None else self.poll_delay
        if deadline is not None:
            wait = max(0.0, min(wait, deadline - time.monotonic()))
        if self._sub is None:  # the service publishes nothing: poll its states now and then
            time.sleep(wait)
            return []
        if not self._sub.poll(int(wait * 1000)):
            return []
        events: List[Dict[str, Any]] = []
        while True:
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return events
            ev = parse_event(frames)
            if ev is not None:
                events.append(ev)

    def _drain_events(self) -> None:
        if self._sub is None:
            return
        while True:
            try:
                self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return

    def wait4(self, names: Union[str, Iterable[str]], timeout: Optional[float] = None,
              on_progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, str]:
        """Wait until every named job is finished; returns their final states.

        ``on_progress(finished, total)`` is called as jobs finish (a progress bar)."""
        names = _names(names)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drain_events()
        done = {n: s for n, s in self._states(names).items() if s in FINAL}
        pending = set(names) - set(done)
        while pending:
            if on_progress is not None:
                on_progress(len(done), len(names))
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutElapsed(f"{len(pending)} job(s) not finished after {timeout}s")
            events = self._events(deadline)
            if not events:  # no event within a poll period: ask (guards a lost event)
                done.update({n: s for n, s in self._states(pending).items() if s in FINAL})
            for ev in events:
                if ev.get("event") == "job" and ev.get("job") in pending and ev.get("state") in FINAL:
                    done[ev["job"]] = ev["state"]
            pending -= set(done)
        return {n: done[n] for n in names}

    def wait4all(self, timeout_secs: Optional[float] = None) -> None:
        deadline = None if timeout_secs is None else time.monotonic() + timeout_secs
        while True:
            active = [n for n, e in self.list().items() if e.get("status") not in FINAL]
            if not active:
                return
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.wait4(active, left)

    def wait4_any_job_finish(self, timeout_secs: Optional[float] = None) -> Tuple[Optional[str], Optional[str]]:
        """The next job to finish and its state; (None, None) when none is active or time is up."""
        deadline = None if timeout_secs is None else time.monotonic() + timeout_secs
        self._drain_events()
        active = {n for n, e in self.list().items() if e.get("status") not in FINAL}
        while active:
            if deadline is not None and time.monotonic() >= deadline:
                return None, None
            events = self._events(deadline)
            if not events:
                for n, s in self._states(active).items():
                    if s in FINAL:
                        return n, s
            for ev in events:
                if ev.get("event") == "job" and ev.get("job") in active and ev.get("state") in FINAL:
                    return ev["job"], ev["state"]
        return None, None

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def _names(names: Union[str, Iterable[str]]) -> List[str]:
    return [names] if isinstance(names, str) else list(names)


class LocalManager(Manager):
    """Starts a service in a background process and connects to it.

    A process, not a thread (QCG-PilotJob uses a thread): the service changes
    into its working directory and handles signals, which must not touch the
    caller's process.  It dies with the caller (the service notices its parent
    is gone) and ``finish()`` ends it.
    """

    def __init__(self, server_args: Optional[List[str]] = None, cfg: Optional[Dict[str, Any]] = None) -> None:
        cfg = dict(cfg or {})
        args = [str(a) for a in (server_args or [])]
        if not any(a.startswith("--net-iface") for a in args):
            args += ["--net-iface", "127.0.0.1"]
        cmd = [sys.executable, "-m", "hpilot.governor", "service", "--net", "--parent-pid", str(os.getpid())] + args
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        atexit.register(self._atexit)
        address, pub, run_dir = self._read_banner(float(cfg.get("init_timeout", 300)))
        self.run_dir = run_dir
        key_file = os.path.join(run_dir, CLIENT_KEY_FILE)
        super().__init__(address, cfg, keys=key_file if os.path.exists(key_file) else None)

    def _read_banner(self, timeout: float) -> Tuple[str, Optional[str], str]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, left))
            if not ready:
                self.kill_manager_process()
                raise ServiceError(f"the service did not start in {timeout:g}s")
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                code = self.process.wait()
                raise ServiceError(f"the service exited with status {code} before listening (see its message above)")
            line += chunk
        text = line.decode().strip().splitlines()[0]
        # "hpilot: service listening on ADDR, events PUB; run dir DIR"
        try:
            head, run_dir = text.split("; run dir ", 1)
            parts = head.split("listening on ", 1)[1].split(", events ")
        except (IndexError, ValueError):
            raise ServiceError(f"unexpected first line from the service: {text!r}") from None
        return parts[0], parts[1] if len(parts) > 1 else None, run_dir

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._wait_or_kill(10.0)

    def _wait_or_kill(self, timeout: float) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def kill_manager_process(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self._wait_or_kill(10.0)

    def _atexit(self) -> None:
        if self.process.poll() is None:
            self.kill_manager_process()

    @staticmethod
    def is_notebook() -> bool:
        return "ipykernel" in sys.modules
