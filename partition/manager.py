"""A partition manager process: a PartitionCore and a launcher behind a DEALER to the governor.

Started by hand (``hpilot service --parent ADDRESS``) or by a governor for a group of
nodes.  It registers (advertising its nodes and cores), takes :class:`Work` as it
comes, reports every iteration's start and end (batched per job, one frame per report period
and at once for exceptions: see _flush),
and sends a heartbeat.  Reports of finished iterations are the credit it gives back:
the governor counts what it sent and measures the partition's rate from them.

It never outlives its governor, and stops starting work as soon as the governor is gone:
at once when the governor started it (it watches its parent's pid); within about 0.3 s
when the governor's connection closes (its process died, wherever it ran: reconnects to
its port are refused; ``UpstreamWatch.grace``, 0.5 s, if nothing answers), registered or
not yet; and after ``LOST_AFTER`` silent heartbeats when its host vanished without
closing anything (no new work after ``PAUSE_AFTER`` of them).  Then it kills its
tasks at once (SIGKILL: nobody is left to report to) and exits.  When the governor says Bye
it stops the same way, reporting what it killed.
SIGTERM/SIGINT drain it: it tells the governor it is leaving, finishes what it holds
and then says Bye, so no work is lost.

With a client port (``--net``: a :class:`ClientPort`, the governor's ``NetInterface``
composed in by ``governor.startup``; this layer never imports the governor) it also
answers clients: a partition holds no jobs, so every request is forwarded to the
governor as a :class:`wire.ClientQuery` and its :class:`wire.ClientAnswer` goes back to
the client.  A request the governor does not answer within ``query_timeout`` seconds,
or still waiting when the manager exits, gets an error response saying why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import zmq
from hpilot.launcher import curve, safejson
from hpilot.launcher.api import LauncherFactory, poll_targets
from hpilot.launcher.upstream import UpstreamWatch, parent_watch
from hpilot.launcher.vigil import Vigil, excused
from hpilot.partition import batchwire, wire
from hpilot.partition.core import PartitionCore
from hpilot.partition.messages import CancelJob, Release, Reserve, RunReserved, Shutdown, Work
from hpilot.partition.runner import PartitionRunner

log = logging.getLogger("hpilot.partition.manager")
LOST_AFTER = 6
REREAD_EVERY = 60.0  # seconds between reads of the allocation's end while work waits for it (scontrol)
PAUSE_AFTER = 2  # silent heartbeats after which no new task starts (until the governor is heard again)
ERROR = 1  # the "code" of an error response (QCG-PilotJob's)
# A stopping manager waits this long (at most) for the answers to requests it forwarded:
# a `finish` sent here stops this partition (the governor's Shutdown comes before its answer).
ANSWER_GRACE = 2.0
REPORT_EVERY = 0.1  # a partition's progress goes up this often (exceptions and an empty queue at once: _flush)


class ClientPort(Protocol):
    """Where clients' requests arrive (``governor.net.NetInterface`` fits): answers may come later."""

    def sockets(self) -> List[zmq.Socket]: ...

    def process_deferred(self, handle: Callable[[Any, int], Optional[Dict[str, Any]]], timeout: float) -> int: ...

    def answer(self, token: int, response: Dict[str, Any]) -> bool: ...

    def due_in(self) -> Optional[float]: ...

    def expire(self, message: str) -> int: ...

    def fail_pending(self, message: str) -> int: ...

    @property
    def pending(self) -> int: ...


class ManagerError(Exception):
    """The manager cannot start (bad address, refused registration): one clear line."""


def governor_run_path(parent: str) -> Optional[str]:
    """The governor's run dir when ``--parent`` names a directory (its wd: the newest run)."""
    if not os.path.isdir(parent):
        return None
    latest = os.path.join(parent, ".hpilot", "latest")
    return latest if os.path.isdir(latest) else parent


def resolve_parent(parent: str) -> Tuple[str, Optional[str]]:
    """``--parent`` is an address, or the governor's run dir or wd: (its address, the partition
    key file there, if any)."""
    path = governor_run_path(parent)
    if path is not None:
        try:
            with open(os.path.join(path, "partitions.address")) as f:
                address = f.read().strip()
        except OSError:
            raise ManagerError(f"--parent {parent}: no governor's partitions.address there") from None
        key_file = os.path.join(path, "partition.key")
        return address, key_file if os.path.exists(key_file) else None
    if not parent.startswith("tcp://"):
        raise ManagerError(f"--parent {parent!r}: give the governor's address (tcp://host:port) or its wd")
    return parent, None


class PartitionManager:
    def __init__(self, address: str, keys: curve.PeerKeys, pid: str, tags: Tuple[str, ...], core: PartitionCore,
                 make_launcher: LauncherFactory, register_timeout: float = 30.0,
                 client: Optional[ClientPort] = None, query_timeout: float = 60.0,
                 parent_pid: Optional[int] = None, reread_deadline: Optional[Callable[[], float]] = None) -> None:
        self.core = core
        self.reread_deadline = reread_deadline  # the allocation's end, read again (governor/service/stop.py)
        self._reread_at = 0.0
        self.parent_pid = parent_pid  # the governor, when it started this manager as its child
        self.client = client
        self.query_timeout = query_timeout
        self.address = address
        self.ctx: zmq.Context = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.setsockopt(zmq.IDENTITY, os.urandom(16))
        self.sock.setsockopt(zmq.MAXMSGSIZE, wire.LIMITS.max_bytes)
        curve.connect_with(self.sock, keys)  # the governor admits holders of the run's partition key only
        # Connected before the launcher starts (its agents may take seconds): a governor that
        # dies meanwhile closes a connection that was up, which the watch sees.  Registered
        # after: the governor counts heartbeats from then on.
        self.upstream = UpstreamWatch(self.sock)
        self.sock.connect(address)
        self.launcher = make_launcher()
        self.runner = PartitionRunner(core, self.launcher)
        nodes = tuple((n.name, len(n.cores)) for n in core.resources.nodes)
        self._send(wire.register(pid, socket.gethostname(), os.getpid(), nodes, tags))
        self.name = pid or "?"
        self.heartbeat = 1.0
        self.registered = False
        self.register_by = time.time() + register_timeout
        self.last_heard = time.time()
        self.vigil = Vigil(2 * self.heartbeat, log, "this manager", "the governor's")  # a pass waits a beat at most
        self.next_beat = 0.0
        self.leaving = False
        self.stop: Optional[str] = None  # why the loop ends
        self.exit_code = 0
        self._answers_by: Optional[float] = None
        self.parent_gone = False
        self._flushed = 0.0  # when reports last went up

    def _send(self, msg: Any) -> None:
        self.sock.send_multipart([wire.encode(msg)], zmq.NOBLOCK)

    def _flush(self, now: Optional[float] = None) -> None:
        """Reports go up as one frame (the governor's cost is per frame) when they are due
        (:meth:`PartitionRunner.reports_due`: once per ``REPORT_EVERY``, at once for an
        exception or when this partition ran out of work), and always when ``now`` is None."""
        if now is not None and not self.runner.reports_due(now - self._flushed, REPORT_EVERY):
            return
        self._flushed = time.time() if now is None else now
        msgs = self.runner.take_reports()
        if msgs:  # one frame: one wake-up and one decode at the governor
            with contextlib.suppress(zmq.Again):
                self.sock.send(batchwire.encode_batch(msgs), zmq.NOBLOCK)

    # ---- governor messages ----

    def _from_governor(self, msg: Any) -> None:
        self.last_heard = time.time()
        if isinstance(msg, wire.Registered):
            self.registered = True
            self.name = msg.name
            self.heartbeat = msg.heartbeat
            self.vigil.most = 2 * msg.heartbeat
            log.info("registered with %s as partition %s", self.address, msg.name)
        elif isinstance(msg, wire.Refused):
            raise ManagerError(f"the governor refused this partition: {msg.reason}")
        elif isinstance(msg, (Work, CancelJob, Shutdown, Reserve, RunReserved, Release)):
            self.runner.deliver(msg)
            if isinstance(msg, Shutdown):
                self.stop = self.stop or f"shutdown: {msg.reason}"
        elif isinstance(msg, wire.ClientAnswer):
            self._answer(msg)
        elif isinstance(msg, wire.Bye):
            log.warning("the governor said bye (%s): stopping", msg.reason)
            self.stop = self.stop or "the governor finished"
            self.runner.deliver(Shutdown(f"the governor finished: {msg.reason}", time.time()))
        elif not isinstance(msg, wire.Heartbeat):
            log.warning("unexpected %s from the governor dropped", type(msg).__name__)

    # ---- clients: every request is the governor's to answer ----

    def _forward(self, payload: Any, token: int) -> Optional[Dict[str, Any]]:
        if self.stop is not None and self.exit_code:
            return {"code": ERROR, "message": f"partition manager {self.name}: {self.stop}; "
                    "ask the governor directly"}
        try:
            self._send(wire.ClientQuery(token, json.dumps(payload)))
        except zmq.Again:
            return {"code": ERROR, "message": f"partition manager {self.name}: cannot forward the request "
                    "to the governor (not connected, or its queue is full)"}
        return None  # answered when the governor's ClientAnswer arrives

    def _answer(self, msg: wire.ClientAnswer) -> None:
        if self.client is None:
            log.warning("an answer to query %d, but this partition has no client port: dropped", msg.qid)
            return
        try:
            response = safejson.loads(msg.response.encode("utf-8", "surrogatepass"))
        except safejson.DecodeError as e:
            response = None
            log.warning("the governor's answer to query %d is not JSON (%s)", msg.qid, e)
        if not isinstance(response, dict):
            response = {"code": ERROR, "message": "the governor's answer was malformed (see the partition's "
                        "service.log)"}
        if not self.client.answer(msg.qid, response):
            log.info("the governor's late answer to query %d dropped (its client got an error already)", msg.qid)

    def _awaiting_answers(self, now: float) -> bool:
        """Stopping, yet answers to forwarded requests may still come: wait a little for them."""
        if self.client is None or not self.client.pending or self.exit_code:
            return False
        if self._answers_by is None:
            self._answers_by = now + min(ANSWER_GRACE, self.query_timeout)
        return now < self._answers_by

    # ---- the loop ----

    def run(self) -> int:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        for t in poll_targets(self.launcher):
            poller.register(t, zmq.POLLIN)
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        old_fd = signal.set_wakeup_fd(w)
        got: List[int] = []
        old = {s: signal.signal(s, lambda n, f: got.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
        poller.register(r, zmq.POLLIN)
        client_socks = self.client.sockets() if self.client is not None else []
        for sock in client_socks:
            poller.register(sock, zmq.POLLIN)
        poller.register(self.upstream.monitor, zmq.POLLIN)
        parent_fd = parent_watch(self.parent_pid)
        if parent_fd is not None:
            poller.register(parent_fd, zmq.POLLIN)
        killed_at: Optional[float] = None
        try:
            while True:
                now = time.time()
                away = self.vigil.away(now)
                if away:
                    self.last_heard = excused(self.last_heard, away, now)
                    self.launcher.paused(away)
                self._deadline(now, away > 0)
                if self.stop is None:
                    self._governor_gone(now)  # before anything starts: a gone governor gets no new task
                self.runner.step()
                self._flush(now)
                if self.stop is not None and self.launcher.running == 0 and not self._awaiting_answers(now):
                    break
                if self.leaving and self.launcher.running == 0 and self.core.queued_iterations == 0 \
                        and not self.runner.busy and not self._awaiting_answers(now):
                    self._flush()  # every report before the goodbye: the governor forgets us at Bye
                    self._send(wire.Bye("drained"))
                    self.stop = "drained"
                    break
                if not self.registered and now > self.register_by:
                    raise ManagerError(f"no answer from the governor at {self.address} (gone, or it refused this "
                                       f"manager's partition key: is {wire.KEY_ENV} its run's partition.key?)")
                if self.stop is not None and killed_at is None:
                    killed_at = now
                if killed_at is not None and now - killed_at > 10:
                    self.launcher.kill_now()
                if now >= self.next_beat:
                    self.next_beat = now + self.heartbeat
                    with contextlib.suppress(zmq.Again):
                        self._send(wire.Heartbeat(now))
                waits = [self.next_beat - now]
                if self.runner.has_reports:  # progress held back: it goes up when its period ends
                    waits.append(self._flushed + REPORT_EVERY - now)
                dl = self.runner.next_deadline()
                if dl is not None:
                    waits.append(dl - now)
                if self.launcher.needs_polling:
                    waits.append(0.005)
                due = self.client.due_in() if self.client is not None else None
                if due is not None:
                    waits.append(due + 0.001)
                if self._answers_by is not None and self._answers_by > now:
                    waits.append(self._answers_by - now + 0.001)
                down = self.upstream.due_in(now)
                if down is not None:
                    waits.append(down + 0.001)
                ready = dict(poller.poll(max(0, int(min(waits) * 1000))))
                if self.upstream.monitor in ready:
                    self.upstream.process(time.time())
                if parent_fd is not None and parent_fd in ready:
                    poller.unregister(parent_fd)
                    os.close(parent_fd)
                    parent_fd = None
                    self.parent_gone = True
                if r in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(r, 512)
                    if got and not self.leaving:
                        got.clear()
                        log.warning("signal: draining (finishing the work held, then leaving)")
                        self.leaving = True
                        self._send(wire.Leaving("signal"))
                if self.sock in ready:
                    self._recv()
                if self.client is not None and any(sock in ready for sock in client_socks):
                    self.client.process_deferred(self._forward, self.query_timeout)
                if self.client is not None and self.client.pending:  # not on every pass: the message is built
                    self.client.expire(f"partition manager {self.name}: no answer from the governor within "
                                       f"{self.query_timeout:g}s (forwarded; the governor may be gone or busy)")
        except ManagerError as e:
            self.stop = self.stop or str(e)
            raise
        finally:
            signal.set_wakeup_fd(old_fd)
            for s, h in old.items():
                signal.signal(s, h)
            os.close(r)
            os.close(w)
            if self.client is not None:
                self.client.fail_pending(f"partition manager {self.name} exited before the governor answered "
                                         f"({self.stop or 'error'}); ask the governor directly")
            self._flush()
            self.launcher.close()
            self.upstream.close()
            self.sock.close(linger=0 if self.stop == "the governor is gone" else None)  # nobody to wait for
            if parent_fd is not None:
                os.close(parent_fd)
        log.info("partition %s exits: %s", self.name, self.stop)
        return self.exit_code

    def _deadline(self, now: float, paused: bool) -> None:
        """The allocation's end moves when the job was suspended, or its time limit changed: read
        it again after a pause of this manager, and every REREAD_EVERY while work waits for it."""
        if self.reread_deadline is None or not (paused or (self.core.held_back and now >= self._reread_at)):
            return
        self._reread_at = now + REREAD_EVERY
        stop_at = self.reread_deadline()
        if stop_at != self.core.cfg.deadline:
            self.runner.set_deadline(stop_at)

    def _governor_gone(self, now: float) -> bool:
        """Whether the governor is gone (then: no new work, tasks killed at once, exit); while
        it is only silent, no new task starts."""
        why = None
        if self.parent_gone:
            why = f"the governor (pid {self.parent_pid}, which started this manager) is gone"
        elif self.upstream.gone(now):  # registered or not yet: the connection was up, its end is gone
            why = "the governor's connection closed and did not come back (its process is gone)"
        elif self.registered and now - self.last_heard > self.heartbeat * LOST_AFTER:
            why = f"the governor is silent for {now - self.last_heard:.1f}s"
        if why is None:
            silent = self.registered and (self.upstream.down or now - self.last_heard > self.heartbeat * PAUSE_AFTER)
            if silent != self.runner.paused:
                log.warning("the governor is %s: %s", "not heard" if silent else "back",
                            "no new task starts meanwhile" if silent else "starting work again")
                if silent:
                    self.runner.paused = True
                else:
                    self.runner.unpause()
            return False
        log.error("%s: killing tasks and exiting", why)
        self.stop = "the governor is gone"
        self.exit_code = 1
        self.runner.paused = True
        self.runner.deliver(Shutdown("the governor is gone", now))
        self.launcher.kill_now()
        return True

    def _recv(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            for frame in frames:
                try:
                    msg = wire.decode(frame)
                except wire.WireError as e:
                    log.warning("frame from the governor dropped: %s", e)
                    continue
                except Exception:  # the boundary: a decoder bug drops the frame, never the partition
                    log.exception("frame from the governor dropped")
                    continue
                self._from_governor(msg)
