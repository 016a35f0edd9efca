"""The node launcher agent: one long-lived process per node, spawning that node's tasks.

``python -m hpilot.launcher.agent --connect tcp://HOST:PORT --node NAME --key-file F``

It is a DEALER that greets the service's ROUTER (see :mod:`hpilot.launcher.wire`) over
CURVE with the run's agent key (the file ``F``, never a command-line value), then
runs what it is sent through a :class:`LocalLauncher` (the same spawning, binding, wall
time and kill code as local mode) and reports every start and exit.

It must never outlive its manager, even after a ``kill -9`` of the manager, when nobody is
left to tell it: when the manager's connection closes and does not come back (its process
died: reconnects are refused, or half a second passes; :mod:`upstream`), or when the
heartbeats the manager sends every ``heartbeat`` seconds stop for ``misses`` of them (its
host vanished), the agent kills its tasks and exits.  SIGTERM (what Slurm sends when the
agent's step ends, e.g. when ``srun`` dies) does the same.  Its own tasks never outlive
the agent either: its launcher's guard (:mod:`guard`) kills them if the agent is killed.

CPU ids: a task comes with the ids of the cores the partition gave it.  Those that this
node really has are used as they are; on a node configured with more CPUs than exist (an
oversubscribed test node), ids are mapped onto the CPUs the agent may use, in order, and
the first such mapping is logged.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import Any, List, Optional, Sequence, Tuple

import zmq
from hpilot.launcher import curve, wire
from hpilot.launcher.api import LauncherEvent, TaskStarted
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.launcher.local import LocalLauncher
from hpilot.launcher.output import OutputStreams
from hpilot.launcher.upstream import UpstreamWatch
from hpilot.launcher.vigil import Vigil, excused

log = logging.getLogger("hpilot.agent")

# variables an agent takes from its own environment into every task's: who the node is
NODE_VARS = ("SLURMD_NODENAME",)


def map_cpus(wanted: Sequence[int], allowed: Sequence[int]) -> Tuple[Tuple[int, ...], bool]:
    """The CPUs to bind to, and whether ids had to be mapped (pure)."""
    if not allowed or set(wanted) <= set(allowed):
        return tuple(wanted), False
    order = sorted(allowed)
    return tuple(sorted({order[c % len(order)] for c in wanted})), True


class Agent:
    def __init__(self, connect: str, node: str, keys: curve.PeerKeys, grace: float = 3.0, misses: int = 5,
                 hello_timeout: float = 60.0, stats: Tuple[Any, Any] = (None, None),
                 output: Optional[OutputStreams] = None) -> None:
        self.node = node
        self.misses = misses
        self.hello_timeout = hello_timeout
        self.ctx: zmq.Context = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 2000)
        self.sock.setsockopt(zmq.ROUTING_ID, os.urandom(16))
        curve.connect_with(self.sock, keys)
        self._monitor = self.sock.get_monitor_socket(curve.MONITORED)  # a refused key ends the greeting at once
        self.sock.connect(connect)
        self.allowed = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()
        self.outbox: List[bytes] = []
        self.launcher = LocalLauncher(grace=grace, rtstats=stats[0], procstats=stats[1], output=output)
        self.node_env = {k: os.environ[k] for k in NODE_VARS if k in os.environ}
        self.node_env["HPILOT_NODE"] = node
        self.heartbeat = 1.0
        self.last_heard = time.monotonic()
        self.next_beat = 0.0
        self.stop: Optional[str] = None
        self._mapped_logged = False
        self.wake_fd: Optional[int] = None  # readable when a signal came (main sets it up)

    # ---- reports to the service ----

    def _report(self, events: List[LauncherEvent]) -> None:
        for ev in events:
            if isinstance(ev, TaskStarted):
                self.outbox.append(wire.encode(wire.Started(ev.task_id, ev.pid, ev.now)))
            elif isinstance(ev, TaskExit):
                self.outbox.append(wire.encode(wire.Exited.of(ev)))

    def _flush(self) -> None:
        if self.outbox:
            self.sock.send_multipart(self.outbox)
            self.outbox = []

    # ---- the handshake ----

    def greet(self) -> bool:
        try:
            return self._greet()
        finally:
            self.sock.disable_monitor()
            self._monitor.close(0)

    def _greet(self) -> bool:
        h = wire.hello(self.node, os.getpid(), self.allowed)
        self.sock.send(wire.encode(h))
        deadline = time.monotonic() + self.hello_timeout
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while self.stop is None:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("agent %s: no welcome from the service within %.0fs", self.node, self.hello_timeout)
                return False
            ready = dict(poller.poll(int(min(left, 0.5) * 1000)))
            why = curve.handshake_failure(self._monitor) if self._monitor in ready else None
            if why is not None:
                log.error("agent %s: %s (is --key-file the run's agent.key?)", self.node, why)
                return False
            if self.sock not in ready:
                continue
            for frame in self.sock.recv_multipart():
                try:
                    msg = wire.decode(frame)
                except Exception as e:  # WireError; anything else would be a decoder bug: dropped all the same
                    log.warning("agent %s: dropped a malformed frame: %s", self.node, e)
                    continue
                if isinstance(msg, wire.Welcome):
                    self.heartbeat = msg.heartbeat
                    self.last_heard = time.monotonic()
                    return True
                if isinstance(msg, wire.Bye):
                    log.error("agent %s: refused by the service: %s", self.node, msg.reason)
                    return False
                log.warning("agent %s: ignored %s before a valid welcome", self.node, type(msg).__name__)
        return False

    # ---- the loop ----

    def run(self) -> int:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        if self.launcher.fileno() >= 0:
            poller.register(self.launcher.fileno(), zmq.POLLIN)
        upstream = UpstreamWatch(self.sock)
        poller.register(upstream.monitor, zmq.POLLIN)
        if self.wake_fd is not None:
            poller.register(self.wake_fd, zmq.POLLIN)
        try:
            return self._loop(poller, upstream)
        finally:
            upstream.close()

    def _loop(self, poller: zmq.Poller, upstream: UpstreamWatch) -> int:
        vigil = Vigil(2 * self.heartbeat, log, f"agent {self.node}", "the service's")  # a pass waits a beat at most
        while self.stop is None:
            now = time.monotonic()
            if now - self.last_heard > self.heartbeat * self.misses:
                self.stop = f"no word from the service for {now - self.last_heard:.1f}s (it is gone)"
                break
            if upstream.gone(now):
                self.stop = "the service's connection closed and did not come back (its process is gone)"
                break
            if now >= self.next_beat:
                self.outbox.append(wire.encode(wire.Heartbeat(time.time())))
                self.next_beat = now + self.heartbeat
            self._flush()
            waits = [self.next_beat - now, self.last_heard + self.heartbeat * self.misses - now]
            deadline = self.launcher.next_deadline()
            if deadline is not None:
                waits.append(deadline - time.time())
            if self.launcher.needs_polling:
                waits.append(0.005)
            down = upstream.due_in(now)
            if down is not None:
                waits.append(down)
            ready = dict(poller.poll(max(0, int(min(waits) * 1000)) + 1))
            woke = time.monotonic()
            away = vigil.away(woke)
            if away:  # before anything else runs: the silence and the wall times move on by the pause
                self.last_heard = excused(self.last_heard, away, woke)
                self.launcher.paused(away)
            if upstream.monitor in ready:
                upstream.process(time.monotonic())
            if self.wake_fd is not None and self.wake_fd in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_fd, 512)
            if self.sock in ready:
                self._receive()
            self._report(self.launcher.poll())
        log.info("agent %s: stopping: %s", self.node, self.stop)
        return 0

    def _receive(self) -> None:
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.last_heard = time.monotonic()
            for frame in frames:
                try:
                    msg = wire.decode(frame)
                except Exception as e:  # WireError; anything else would be a decoder bug: dropped all the same
                    log.warning("agent %s: dropped a malformed frame: %s", self.node, e)
                    continue
                self._handle(msg)

    def _handle(self, msg: wire.Message) -> None:
        if isinstance(msg, wire.Launch):
            self.launcher.launch(self._request(msg))
        elif isinstance(msg, wire.Kill):
            self.launcher.kill(msg.task_id, msg.reason)
        elif isinstance(msg, wire.KillNow):
            self.launcher.kill_now()
        elif isinstance(msg, wire.Bye):
            self.stop = f"the service said goodbye ({msg.reason})"
        elif not isinstance(msg, wire.Heartbeat):
            log.warning("agent %s: unexpected %s dropped", self.node, type(msg).__name__)

    def _request(self, msg: wire.Launch) -> LaunchRequest:
        cpus = msg.cpus
        if cpus:
            cpus, mapped = map_cpus(cpus, self.allowed)
            if mapped and not self._mapped_logged:
                self._mapped_logged = True
                log.warning("agent %s: CPU ids %s are not on this node (it has %s): mapping ids onto those",
                            self.node, list(msg.cpus or ()), list(self.allowed))
        env = msg.env
        if env is not None:
            env = dict(env)
            env.update(self.node_env)
        return LaunchRequest(msg.task_id, msg.argv, env, msg.wd, msg.stdin, msg.stdout, msg.stderr, cpus,
                             msg.walltime, self.node)

    def close(self) -> None:
        """Kill every task (with its process group) and say goodbye if the service still listens."""
        self._report(self.launcher.poll())
        self.launcher.close()
        try:
            self.outbox.append(wire.encode(wire.Bye(self.stop or "closing")))
            self._flush()
        except zmq.ZMQError:
            pass
        gone = self.stop is not None and ("is gone" in self.stop or "no word" in self.stop)
        self.sock.close(linger=0 if gone else 500)  # a gone service waits for nothing


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hpilot.launcher.agent", description=__doc__.split("\n")[0])
    p.add_argument("--connect", required=True, help="the service's agent address, tcp://HOST:PORT")
    p.add_argument("--node", required=True, help="this node's name in the allocation")
    p.add_argument("--key-file", required=True, help="the run's agent key file (keys never go on a command line)")
    p.add_argument("--grace", type=float, default=3.0, help="seconds between SIGTERM and SIGKILL of a task")
    p.add_argument("--misses", type=int, default=5, help="heartbeats missed before the service is deemed gone")
    p.add_argument("--hello-timeout", type=float, default=60.0)
    p.add_argument("--log", default="info")
    p.add_argument("--run-dir", default=None, help="where --rt-stats/--proc-stats records go (shared file system)")
    p.add_argument("--rt-stats", action="store_true")
    p.add_argument("--wrapper", default=None)
    p.add_argument("--proc-stats", action="store_true")
    p.add_argument("--proc-interval", type=float, default=1.0)
    p.add_argument("--output-dir", default=None,
                   help="stream the output of tasks that name no stdout/stderr file into DIR/<node>-<pid>.out")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log.upper(), stream=sys.stderr,
                        format=f"%(asctime)s agent[{args.node}@{socket.gethostname()}] %(levelname)s %(message)s")
    try:
        keys = curve.read_peer_keys(args.key_file)
    except curve.KeyFileError as e:
        log.error("%s", e)
        return 2
    stats: Tuple[Any, Any] = (None, None)
    if args.run_dir and (args.rt_stats or args.proc_stats):
        from hpilot.launcher.rtstats import WrapperError, open_stats

        try:
            stats = open_stats(args.run_dir, args.rt_stats, args.wrapper, args.proc_stats, args.proc_interval,
                               tag=f"{args.node}-{os.getpid()}")
        except WrapperError as e:
            log.error("%s", e)
            return 2
    output = None
    if args.output_dir:
        try:
            output = OutputStreams(args.output_dir, f"{args.node}-{os.getpid()}")
        except OSError as e:
            log.error("cannot write task output into %s: %s", args.output_dir, e)
            return 2
    agent = Agent(args.connect, args.node, keys, args.grace, args.misses, args.hello_timeout, stats, output)

    stopped_by: List[int] = []

    def on_signal(signum: int, frame: object) -> None:
        agent.stop = f"signal {signal.Signals(signum).name}"
        stopped_by.append(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    # pyzmq runs the handler and resumes its poll: the wakeup pipe, which the loop polls too,
    # makes it return at once (srun passes SIGTERM on when the manager that started it dies).
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w)
    agent.wake_fd = r
    status = 3
    try:
        if agent.greet():
            status = agent.run()
    finally:
        agent.close()
    # stopped by a signal: the shell's 128 + its number, so that the manager reads a stop
    # signal (the allocation ending) from the exit alone, should it see the exit before the
    # goodbye (both race to it; under load the exit won, and the node was lost at once)
    return 128 + stopped_by[0] if stopped_by else status


if __name__ == "__main__":
    sys.exit(main())

