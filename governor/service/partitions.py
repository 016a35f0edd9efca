"""Governor mode, the I/O side: one ROUTER socket that partition managers register with.

It turns frames into the core's events (:class:`PartitionJoined`, ``FromPart``, ...)
and the core's ``SendToPartition`` actions into frames; it keeps the heartbeats (both
ways) and reports a partition that fell silent as lost, so that the core re-queues its
work.  It also starts the partition managers that the governor runs itself
(``--partition-nodes``: local processes; ``--slurm-partition-nodes``: ``srun``).

A client's request sent to a partition manager's client port arrives here as a
:class:`wire.ClientQuery` and becomes the core's ordinary ``ClientRequest`` (its
``reply_to`` a :class:`ForwardedQuery`); the service sends the response back with
:meth:`PartitionLinks.answer`.  Only registered partitions are heard, and only holders of
the run's partition key (``partition.key``) can reach the socket at all: it is a CURVE
server wherever it is bound (:mod:`hpilot.launcher.curve`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import zmq
from hpilot.governor.core.events import (
    ClientRequest,
    FenceLifted,
    FromPart,
    PartitionDraining,
    PartitionGone,
    PartitionJoined,
)
from hpilot.governor.core.governor import ERROR
from hpilot.governor.service.net import REQUEST_LIMITS, bind, resolve_iface
from hpilot.launcher import curve, guard, safejson
from hpilot.launcher.private import open_private, write_private
from hpilot.launcher.vigil import Vigil, excused
from hpilot.partition import batchwire, wire
from hpilot.partition.messages import FROM_PARTITION

log = logging.getLogger("hpilot.partitions")
ADDRESS_FILE = "partitions.address"
LOST_AFTER = 6  # heartbeats missed before a partition counts as lost
GUARD_BOUND = guard.BOUND  # a process known dead: its guard has killed its tasks within this
EXITS_EVERY = 0.05  # seconds: how often a busy loop asks whether a partition manager of ours exited


@dataclass(frozen=True)
class ForwardedQuery:
    """``reply_to`` of a request a partition manager forwarded: where its answer goes."""

    partition: str
    ident: bytes
    qid: int


class _Link:
    __slots__ = ("name", "ident", "last", "host", "pid")

    def __init__(self, name: str, ident: bytes, now: float, host: str, pid: int) -> None:
        self.name, self.ident, self.last, self.host, self.pid = name, ident, now, host, pid


class PartitionLinks:
    def __init__(self, iface: str, run_path: str, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self.keys = curve.RunKeys.of(run_path).issue("partition")
        self.ctx: zmq.Context = zmq.Context.instance()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 1000)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.MAXMSGSIZE, wire.LIMITS.max_bytes)
        curve.serve(self.router, self.keys.server, [self.keys.peer_public], "partition")
        self.address = bind(self.router, *resolve_iface(iface), "partition")
        write_private(os.path.join(run_path, ADDRESS_FILE), self.address + "\n")
        self.by_ident: Dict[bytes, _Link] = {}
        self.by_name: Dict[str, _Link] = {}
        self._count = 0
        self.ever: Set[str] = set()
        self._next_beat = 0.0
        self._next_exits = 0.0
        self.procs: Dict[str, subprocess.Popen] = {}  # the partition managers this governor started
        self.local: Set[str] = set()  # ... as its own children (not through srun)
        self._reported: Set[str] = set()
        self.fences: Dict[str, float] = {}  # lost partition -> when its tasks are known dead
        self.vigil = Vigil(2 * heartbeat, log, "this governor", "its partitions'")  # a pass waits a beat at most
        self.gone: Dict[str, str] = {}  # partition -> why it left or was lost (it never comes back)

    def sockets(self) -> List[Any]:
        return [self.router]

    # ---- in ----

    def process(self, now: float) -> List[Any]:
        events: List[Any] = []
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return events
            if len(frames) < 2:
                continue
            ident = frames[0]
            for frame in frames[1:]:
                try:
                    msgs, errors = batchwire.decode_frame(frame)
                except wire.WireError as e:
                    log.warning("partition frame dropped: %s", e)
                    continue
                except Exception:  # the boundary: a decoder bug drops the frame, never the governor
                    log.exception("partition frame dropped")
                    continue
                for why in errors:
                    log.warning("partition record dropped: %s", why)
                for msg in msgs:
                    self._one(ident, msg, now, events)

    def _one(self, ident: bytes, msg: Any, now: float, events: List[Any]) -> None:
        link = self.by_ident.get(ident)
        if link is None:
            if isinstance(msg, wire.Register):
                self._register(ident, msg, now, events)
            else:  # e.g. one declared lost that comes back: its work is elsewhere now, it must stop
                log.warning("frame from an unregistered partition dropped (%s): telling it to stop",
                            type(msg).__name__)
                self._send(ident, wire.Bye("this partition is not registered (declared lost?)"))
            return
        link.last = now
        if isinstance(msg, FROM_PARTITION):
            events.append(FromPart(link.name, msg))
        elif isinstance(msg, wire.ClientQuery):
            self._query(link, msg, now, events)
        elif isinstance(msg, wire.Leaving):
            log.info("partition %s drains: %s", link.name, msg.reason)
            events.append(PartitionDraining(link.name))
        elif isinstance(msg, wire.Bye):
            log.info("partition %s left: %s", link.name, msg.reason)
            self._forget(link)
            self.gone[link.name] = f"left: {msg.reason}"
            events.append(PartitionGone(link.name, f"left: {msg.reason}", True, now))
        elif not isinstance(msg, wire.Heartbeat):
            log.warning("partition %s: unexpected %s dropped", link.name, type(msg).__name__)

    def _query(self, link: _Link, msg: wire.ClientQuery, now: float, events: List[Any]) -> None:
        to = ForwardedQuery(link.name, link.ident, msg.qid)
        try:
            payload = safejson.loads(msg.payload.encode("utf-8", "surrogatepass"), REQUEST_LIMITS)
        except safejson.DecodeError as e:  # the partition's client sent JSON; a bad one is answered, never fatal
            log.warning("partition %s: forwarded request %d is not JSON (%s): answered with an error",
                        link.name, msg.qid, e)
            self.answer(to, {"code": ERROR, "message": f"the forwarded request is not valid JSON: {e}"})
            return
        events.append(ClientRequest(payload, now, to))

    def answer(self, to: ForwardedQuery, response: Dict[str, Any]) -> None:
        """The response to a request a partition manager forwarded."""
        try:
            text = json.dumps(response, default=str)
        except ValueError as e:  # e.g. a circular structure: a bug, but the partition's client gets an answer
            log.error("answer to a request forwarded by %s cannot be encoded: %s", to.partition, e)
            text = json.dumps({"code": ERROR, "message": f"internal error: the answer cannot be encoded: {e}"})
        self._send(to.ident, wire.ClientAnswer(to.qid, text))

    def _register(self, ident: bytes, msg: wire.Register, now: float, events: List[Any]) -> None:
        why = wire.check_register(msg)
        if why is None and msg.id and msg.id in self.by_name:
            why = f"a partition named {msg.id!r} is already registered"
        if why is None and not msg.nodes:
            why = "a partition without nodes"
        if why is not None:
            log.warning("registration from %s (pid %s) refused: %s", msg.host, msg.pid, why)
            self._send(ident, wire.Refused(why))
            return
        self._count += 1
        name = msg.id or f"p{self._count}"
        while name in self.by_name:
            self._count += 1
            name = f"p{self._count}"
        link = _Link(name, ident, now, msg.host, msg.pid)
        self.by_ident[ident] = link
        self.by_name[name] = link
        self.ever.add(name)
        log.info("partition %s registered from %s (pid %d): %s (governor cpu %.3f s)", name, msg.host, msg.pid,
                 ", ".join(f"{n}:{c}" for n, c in msg.nodes), time.process_time())
        self._send(ident, wire.Registered(name, self.heartbeat))
        events.append(PartitionJoined(name, tuple((str(n), int(c)) for n, c in msg.nodes), tuple(msg.tags), now))

    # ---- out ----

    def send(self, name: str, *msgs: Any) -> None:
        """Messages to one partition, in one multipart (a frame each): one send, one wake-up of
        the partition, however many the governor had for it in one pass."""
        link = self.by_name.get(name)
        if link is None:
            log.warning("%d message(s) for partition %s, which is gone, dropped", len(msgs), name)
            return
        self._send(link.ident, *msgs)

    def _send(self, ident: bytes, *msgs: Any) -> None:
        try:
            self.router.send_multipart([ident, *map(wire.encode, msgs)], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError) as e:
            log.warning("cannot send to a partition: %s", e)

    # ---- timers ----

    def next_deadline(self) -> float:
        return min([self._next_beat, *self.fences.values()])

    def tick(self, now: float) -> List[Any]:
        """Heartbeats out; partitions silent for LOST_AFTER beats, or whose process exited, are
        lost; the fence of a lost partition is lifted once its tasks are known dead.  Exits are
        asked at most every EXITS_EVERY: a busy loop passes once per partition frame, and a
        wait per child in every pass cost the governor more with every partition."""
        events: List[Any] = []
        if now >= self._next_exits:
            self._next_exits = now + EXITS_EVERY
            events = self._exits(now)
        for name, at in list(self.fences.items()):
            if now >= at:
                del self.fences[name]
                log.info("partition %s: its tasks are known dead; what it held runs again", name)
                events.append(FenceLifted(name, now))
        away = self.vigil.away(now)
        if away:
            for link in self.by_name.values():
                link.last = excused(link.last, away, now)
        if now < self._next_beat:
            return events
        self._next_beat = now + self.heartbeat
        for link in list(self.by_name.values()):
            if now - link.last > self.heartbeat * LOST_AFTER:
                log.error("partition %s lost: silent for %.1fs", link.name, now - link.last)
                self._lost(link, f"silent for {now - link.last:.1f}s", now, events)
            else:
                self._send(link.ident, wire.Heartbeat(now))
        return events

    def _exits(self, now: float) -> List[Any]:
        """Partition managers of ours that exited: lost at once (no wait for their silence)."""
        events: List[Any] = []
        for name, p in self.procs.items():
            if name in self._reported or p.poll() is None:
                continue
            self._reported.add(name)
            log.warning("partition manager %s (pid %d) exited with %s", name, p.pid, p.returncode)
            link = self.by_name.get(name)
            if link is not None and name in self.local:
                self._lost(link, f"its process exited (exit code {p.returncode})", now, events)
            elif name in self.fences and name in self.local:  # fenced before: dead now
                self.fences[name] = min(self.fences[name], now + GUARD_BOUND)
        return events

    def _lost(self, link: _Link, reason: str, now: float, events: List[Any]) -> None:
        """A lost partition, fenced (fencing.py) until its tasks are known dead: a process of ours
        that is dead (killed now if it still runs) within its guard's bound; any other when a live
        manager that lost its governor would have killed its tasks."""
        self._forget(link)
        self.gone[link.name] = reason
        events.append(PartitionGone(link.name, reason, False, now))
        p = self.procs.get(link.name)
        if p is not None and link.name in self.local:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()  # lost anyway: its guard kills its tasks the moment it dies
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(1.0)
            if p.poll() is not None:
                self._reported.add(link.name)
                self.fences[link.name] = now + GUARD_BOUND
                return
        self.fences[link.name] = now + self.heartbeat * LOST_AFTER + GUARD_BOUND

    def _forget(self, link: _Link) -> None:
        self.by_ident.pop(link.ident, None)
        self.by_name.pop(link.name, None)

    def all_gone(self) -> Optional[str]:
        """Why no partition will ever run anything again, or None: every partition this governor
        started left, was lost or exited before it registered, and what they ran is known dead (no
        fence is up).  Then the work left can only wait for the allocation's end (a partition
        declared lost is told to stop if it comes back, and nothing starts new ones), so the run
        stops resumably instead (service.py).  A governor that started none (its partitions
        register from elsewhere) waits for them as before."""
        if not self.procs or self.by_name or self.fences:
            return None
        why = dict(self.gone)
        for name, p in self.procs.items():
            if name not in why:
                if p.poll() is None:
                    return None  # it may still register
                why[name] = f"its process exited before it registered (exit code {p.returncode})"
        return "; ".join(f"{name}: {reason}" for name, reason in sorted(why.items()))

    def missing(self) -> List[str]:
        """Partitions this governor started that never registered."""
        return [name for name in self.procs if name not in self.ever]

    @property
    def registered(self) -> int:
        return len(self.by_name)

    # ---- partition managers this governor starts ----

    def spawn(self, groups: Sequence[Tuple[str, List[str]]], wd: str, log_level: str,
              srun: bool = False, first_node: Optional[Dict[str, str]] = None) -> None:
        """One partition manager per group: (name, extra command-line arguments)."""
        first_node = first_node or {}
        env = dict(os.environ)
        env[wire.KEY_ENV] = self.keys.path
        env.pop("HPILOT_CLIENT_KEY", None)
        for name, args in groups:
            argv = [sys.executable, "-m", "hpilot.governor", "service", "--parent", self.address, "--id", name,
                    "--wd", wd, "--log", log_level] + args
            if not srun:  # our child: it stops the moment this process is gone (srun's: by its connection)
                argv += ["--parent-pid", str(os.getpid())]
            if srun:  # on the group's first node, inside the allocation's step
                node = first_node.get(name)
                argv = ["srun", "-N1", "-n1", "--overlap", "--cpu-bind=none", "--export=ALL"] + \
                    (["-w", node] if node else []) + argv
            with open_private(os.path.join(wd, ".hpilot", f"partition-{name}.out"), "ab") as out:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     env=env, cwd=wd, start_new_session=not srun)
            self.procs[name] = p
            if not srun:
                self.local.add(name)
            log.info("partition manager %s started (pid %d): %s", name, p.pid, " ".join(argv))

    def close(self, wait: float = 10.0) -> None:
        for link in list(self.by_name.values()):
            self._send(link.ident, wire.Bye("the governor is finishing"))
        for name, p in self.procs.items():  # never registered: nobody can say bye to it
            if name not in self.by_name and p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        deadline = time.monotonic() + wait
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(max(0.1, deadline - time.monotonic()))
            if p.poll() is None:
                log.warning("partition manager pid %d still running: terminating it", p.pid)
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.router.close()
