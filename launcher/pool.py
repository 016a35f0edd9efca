"""The service's side of the node agents: one ROUTER, one agent per node, tasks routed by node.

:class:`AgentPool` implements the :class:`~hpilot.launcher.api.Launcher` protocol, so the
service drives it exactly as it drives the local launcher.  It starts an agent on every
node (``srun --overlap -N1 -n1 -w NODE`` or ``ssh NODE``), waits until enough of them
greeted it (``--nl-init-timeout``, ``--nl-ready-threshold``), then sends each
:class:`LaunchRequest` to the agent of ``request.node``.

Faults are reported, never hidden:

- an agent that never greets, or whose ``srun``/``ssh`` fails, leaves its node out (the
  start fails as a whole only below the ready threshold, with every node's reason);
- an agent that dies mid-run (its starter exits, it says goodbye, or it misses
  heartbeats) loses its node: each task it ran ends FAILED with the reason, and the
  owner learns through a ``NodeChanged`` event so that no work goes there again.

Every starter process gets ``PR_SET_PDEATHSIG``: should the service die, ``srun`` is
told and ends the agent's step; the agent's own heartbeat watch covers ``ssh`` and the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import zmq
from hpilot.launcher import curve, guard, private, wire
from hpilot.launcher.api import LauncherEvent, NodeChanged, TaskStarted
from hpilot.launcher.core import HOLD, STOP_SIGNALS, LaunchRequest, TaskExit
from hpilot.launcher.local import LocalLauncher
from hpilot.launcher.output import OutputStreams
from hpilot.launcher.vigil import Vigil, excused

log = logging.getLogger("hpilot.pool")

LOST_EXIT_CODE = -1  # a task whose node was lost has no exit code of its own



class AgentStartError(RuntimeError):
    """Too few agents started; the message has every node's reason."""


# ---- how an agent is started on a node ----


def agent_argv(node: str, connect: str, key_file: str, grace: float, heartbeat_misses: int = 5,
               extra: Sequence[str] = ()) -> List[str]:
    return [sys.executable, "-m", "hpilot.launcher.agent", "--connect", connect, "--node", node,
            "--key-file", key_file, "--grace", str(grace), "--misses", str(heartbeat_misses), *extra]


def stats_args(run_dir: str, rt_stats: bool, wrapper: Optional[str], proc_stats: bool,
               interval: float) -> List[str]:
    """What an agent needs to write rt/proc statistics into the (shared) run directory."""
    if not (rt_stats or proc_stats):
        return []
    out = ["--run-dir", run_dir, "--proc-interval", str(interval)]
    if rt_stats:
        out.append("--rt-stats")
    if wrapper:
        out += ["--wrapper", wrapper]
    if proc_stats:
        out.append("--proc-stats")
    return out


def srun_starter(node: str, wd: str, argv: Sequence[str], srun: str = "srun") -> List[str]:
    """One Slurm step per agent.  ``--overlap`` so that the agents' steps never hold CPUs
    that tasks' own steps (srunmpi, openmpi's orted) need; ``--cpu-bind=none`` so that the
    agent may give its tasks any CPU of the node."""
    return [srun, "--overlap", "--cpu-bind=none", "-N1", "-n1", "-w", node, "--chdir", wd,
            "--kill-on-bad-exit=1", "--job-name=hpilot-agent", "--", *argv]


def ssh_starter(node: str, wd: str, argv: Sequence[str], ssh: str = "ssh") -> List[str]:
    remote = f"cd {shlex.quote(wd)} && exec {shlex.join(argv)}"
    return [ssh, "-o", "BatchMode=yes", "-T", node, remote]


Starter = Callable[[str, str, Sequence[str]], List[str]]


def _pdeathsig() -> Optional[Callable[[], None]]:
    """A preexec_fn asking the kernel to SIGTERM the child when the service dies.
    The libc function is looked up now, so the child only makes one plain call."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    PR_SET_PDEATHSIG = 1

    def set_it() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_it


# ---- per node state ----


@dataclass
class _Node:
    name: str
    proc: Optional[subprocess.Popen] = None
    pidfd: int = -1
    log_path: str = ""
    ident: Optional[bytes] = None  # routing id once greeted
    cpus: Tuple[int, ...] = ()
    last_heard: float = 0.0
    lost: Optional[str] = None  # why the node is out for good
    tasks: Dict[str, float] = field(default_factory=dict)  # task id -> started
    # its agent stopped by a stop signal: (lost at, why), HOLD seconds later (see _stopping)
    stopping: Optional[Tuple[float, str]] = None

    @property
    def ready(self) -> bool:
        return self.ident is not None and self.lost is None and self.stopping is None

    @property
    def held(self) -> Optional[Tuple[float, str]]:
        """(lost at, why) while its agent is stopping and the node is not lost yet."""
        return self.stopping if self.lost is None else None


class AgentPool:
    """A :class:`Launcher` whose processes run in agents on the allocation's nodes."""

    def __init__(self, nodes: Sequence[str], wd: str, log_dir: str,
                 keys: curve.Issued, starter: Starter = srun_starter, grace: float = 3.0,
                 init_timeout: float = 30.0, ready_threshold: float = 1.0, heartbeat: float = 1.0,
                 misses: int = 5, advertise: Optional[str] = None, agent_extra: Sequence[str] = ()) -> None:
        self._events: List[LauncherEvent] = []
        self._fenced: List[Tuple[float, List[TaskExit]]] = []  # a lost node's task exits: (report at, exits)
        self.agent_extra = list(agent_extra)  # e.g. stats_args(): statistics written by the agents
        self.heartbeat = heartbeat
        # its owner's loop waits for next_deadline: a heartbeat at most
        self.vigil = Vigil(2 * heartbeat, log, "the node pool", "its agents'")
        self.misses = misses
        self.nodes: Dict[str, _Node] = {n: _Node(n) for n in nodes}
        self._by_ident: Dict[bytes, _Node] = {}
        self._where: Dict[str, _Node] = {}  # running task -> its node
        self._next_beat = 0.0
        self.ctx: zmq.Context = zmq.Context.instance()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a gone agent raises, never blocks
        self.router.setsockopt(zmq.MAXMSGSIZE, wire.LIMITS.max_bytes)
        curve.serve(self.router, keys.server, [keys.peer_public], "agent")  # only the run's agents get in
        port = self.router.bind_to_random_port("tcp://*")
        self.address = f"tcp://{advertise or socket.gethostname()}:{port}"
        self._epoll = select.epoll()
        self._by_fd: Dict[int, _Node] = {}
        self.started_in: Optional[float] = None
        self._start(wd, log_dir, keys.path, starter, grace)
        try:
            self._wait_ready(init_timeout, ready_threshold)
        except BaseException:
            self.close()
            raise

    # ---- start-up ----

    def _start(self, wd: str, log_dir: str, key_file: str, starter: Starter, grace: float) -> None:
        private.make_dir(log_dir)
        pre = _pdeathsig()
        for st in self.nodes.values():
            st.log_path = os.path.join(log_dir, f"agent-{st.name}.log")
            cmd = starter(st.name, wd, agent_argv(st.name, self.address, key_file, grace, self.misses,
                                                  self.agent_extra))
            log.debug("starting the agent on %s: %s", st.name, shlex.join(cmd))
            with private.open_private(st.log_path, "ab") as out:
                try:
                    st.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True, close_fds=True, preexec_fn=pre)
                except OSError as e:
                    st.lost = f"cannot start the agent: {cmd[0]}: {e.strerror}"
                    continue
            st.pidfd = os.pidfd_open(st.proc.pid)
            self._epoll.register(st.pidfd, select.EPOLLIN)
            self._by_fd[st.pidfd] = st

    def _wait_ready(self, timeout: float, threshold: float) -> None:
        t0 = time.monotonic()
        total = len(self.nodes)
        need = max(1, math.ceil(min(max(threshold, 0.0), 1.0) * total - 1e-9))
        deadline = t0 + timeout
        while True:
            ready = sum(st.ready for st in self.nodes.values())
            pending = [st for st in self.nodes.values() if st.ident is None and st.lost is None]
            if ready >= need or not pending or time.monotonic() >= deadline:
                break
            self.router.poll(int(max(0.0, min(0.05, deadline - time.monotonic())) * 1000) + 1)
            self._receive()
            self._check_exits()
        self.started_in = time.monotonic() - t0
        ready = sum(st.ready for st in self.nodes.values())
        problems = []
        for st in self.nodes.values():
            if st.lost:
                problems.append(f"{st.name}: {st.lost}")
            elif st.ident is None:
                problems.append(f"{st.name}: no agent greeted the service within {timeout:g}s "
                                f"(--nl-init-timeout); see {st.log_path}")
        if ready < need:
            raise AgentStartError(
                f"node launcher agents: {ready} of {total} started, {need} needed (--nl-ready-threshold "
                f"{threshold:g}): " + "; ".join(problems))
        log.info("node launcher agents: %d of %d ready in %.2fs at %s", ready, total, self.started_in, self.address)
        for p in problems:
            log.warning("node launcher agent %s; the node is left out until its agent greets", p)
        for st in self.nodes.values():
            if not st.ready:
                self._emit(st.name, False, st.lost or "its agent has not started yet")

    # ---- the owner's view ----

    def _emit(self, node: str, up: bool, reason: str) -> None:
        self._events.append(NodeChanged(node, up, reason, time.time()))

    def sockets(self) -> List[Any]:
        return [self.router, self._epoll.fileno()]

    def fileno(self) -> int:
        return -1

    @property
    def needs_polling(self) -> bool:
        return False

    @property
    def running(self) -> int:
        return len(self._where) + sum(len(exits) for _, exits in self._fenced)

    @property
    def ready_nodes(self) -> List[str]:
        return [st.name for st in self.nodes.values() if st.ready]

    def next_deadline(self) -> float:
        beat = self._next_beat if self._next_beat else time.time()
        stops = [held[0] for held in (st.held for st in self.nodes.values()) if held is not None]
        return min([beat, *(at for at, _ in self._fenced), *stops])

    # ---- tasks ----

    def launch(self, request: LaunchRequest) -> None:
        st = self.nodes.get(request.node or "")
        if st is None or not st.ready:
            why = "unknown node" if st is None else (st.lost or (st.stopping[1] if st.stopping else None)
                                                     or "its agent has not started")
            now = time.time()
            self._events.append(TaskExit(request.task_id, LOST_EXIT_CODE, now, now,
                                         f"node {request.node} is not available: {why}", unstarted=True, lost=True))
            return
        st.tasks[request.task_id] = 0.0
        self._where[request.task_id] = st
        self._send(st, wire.Launch.of(request))

    def kill(self, task_id: str, reason: str) -> None:
        st = self._where.get(task_id)
        if st is not None and st.stopping is not None:  # its agent is going and will not answer: lose it now
            self._lose(st, st.stopping[1])
        elif st is not None:
            self._send(st, wire.Kill(task_id, reason))
            if task_id in self._where:
                return
        for i, (_, exits) in enumerate(self._fenced):  # lost with its node: the run is ending, say so now
            for ex in exits:
                if ex.task_id == task_id:
                    exits.remove(ex)
                    self._events.append(ex)
                    if not exits:
                        del self._fenced[i]
                    return

    def paused(self, seconds: float) -> None:
        """The wall times of the tasks are the agents' to keep: each agent's vigil moves its own."""

    def kill_now(self) -> None:
        for st in self.nodes.values():
            if st.ready:
                self._send(st, wire.KillNow())

    def _send(self, st: _Node, *msgs: wire.Message) -> None:
        assert st.ident is not None
        try:
            self.router.send_multipart([st.ident, *(wire.encode(m) for m in msgs)])
        except zmq.ZMQError as e:  # EHOSTUNREACH: the agent's connection is gone
            self._lose(st, f"cannot reach its agent ({e})")

    # ---- events in ----

    def poll(self) -> List[LauncherEvent]:
        self._receive()
        mono = time.monotonic()
        away = self.vigil.away(mono)
        if away:
            for st in self.nodes.values():
                st.last_heard = excused(st.last_heard, away, mono)
        self._check_exits()
        for st in list(self.nodes.values()):
            held = st.held
            if held is not None and held[0] <= time.time():
                self._lose(st, held[1])
        if self.next_deadline() <= time.time():
            self.tick()
        if self._fenced:
            now = time.time()
            for _, exits in [f for f in self._fenced if f[0] <= now]:
                self._events.extend(exits)
            self._fenced = [f for f in self._fenced if f[0] > now]
        events, self._events = self._events, []
        return events

    def tick(self) -> None:
        now = time.time()
        mono = time.monotonic()
        for st in list(self.nodes.values()):
            if st.ready and mono - st.last_heard > self.heartbeat * self.misses:
                self._lose(st, f"its agent sent nothing for {mono - st.last_heard:.1f}s (hung or unreachable)")
        if now >= self._next_beat:
            beat = wire.Heartbeat(now)
            for st in list(self.nodes.values()):
                if st.ready:
                    self._send(st, beat)
            self._next_beat = now + self.heartbeat
        self._check_exits()

    def _receive(self) -> int:
        n = 0
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return n
            if len(frames) < 2:
                continue
            ident, parts = frames[0], frames[1:]
            st = self._by_ident.get(ident)
            for frame in parts:
                try:
                    msg = wire.decode(frame)
                except Exception as e:  # WireError; anything else would be a decoder bug: dropped all the same
                    log.warning("dropped a malformed frame from %s: %s", st.name if st else "an unknown peer", e)
                    continue
                n += 1
                if st is None:
                    st = self._greeted(ident, msg)
                    if st is None:
                        break
                else:
                    st.last_heard = time.monotonic()
                    self._handle(st, msg)

    def _greeted(self, ident: bytes, msg: wire.Message) -> Optional[_Node]:
        if not isinstance(msg, wire.Hello):
            log.warning("dropped %s from a peer that has not greeted", type(msg).__name__)
            return None
        why = wire.check_hello(msg)
        st = self.nodes.get(msg.node)
        if why is None and st is None:
            why = f"node {msg.node!r} is not in this allocation"
        elif why is None and st is not None and st.lost:
            why = f"node {msg.node} was already given up: {st.lost}"
        elif why is None and st is not None and st.ident is not None:
            why = f"node {msg.node} already has an agent"
        if why is not None:
            log.warning("refused an agent greeting (node %r): %s", msg.node, why)
            with contextlib.suppress(zmq.ZMQError):
                self.router.send_multipart([ident, wire.encode(wire.Bye(why))])
            return None
        assert st is not None
        st.ident, st.cpus, st.last_heard = ident, msg.cpus, time.monotonic()
        self._by_ident[ident] = st
        self._send(st, wire.Welcome(self.heartbeat))
        if self.started_in is not None:  # a late agent: its node joins now
            log.info("node launcher agent on %s greeted late; the node joins", st.name)
            self._emit(st.name, True, "its agent greeted")
        else:
            log.debug("agent on %s ready (pid %d, CPUs %s)", st.name, msg.pid, list(msg.cpus))
        return st

    def _handle(self, st: _Node, msg: wire.Message) -> None:
        if isinstance(msg, wire.Started):
            if msg.task_id in st.tasks:
                st.tasks[msg.task_id] = msg.now
                self._events.append(TaskStarted(msg.task_id, msg.pid, msg.now))
        elif isinstance(msg, wire.Exited):
            if st.tasks.pop(msg.task_id, None) is not None:
                self._where.pop(msg.task_id, None)
                self._events.append(msg.to_exit())
        elif isinstance(msg, wire.Bye):
            if msg.reason.startswith("signal SIG"):
                self._stopping(st, f"its agent stopped: {msg.reason}")
            else:
                self._lose(st, f"its agent stopped: {msg.reason}")
        elif not isinstance(msg, wire.Heartbeat):
            log.warning("agent %s: unexpected %s dropped", st.name, type(msg).__name__)

    def _check_exits(self) -> int:
        n = 0
        for fd, _ in self._epoll.poll(0):
            st = self._by_fd.pop(fd, None)
            self._epoll.unregister(fd)
            os.close(fd)
            if st is None or st.proc is None:
                continue
            st.pidfd = -1
            code = st.proc.wait()
            n += 1
            why = f"its agent's process ended ({_exit_status(code)}){_last_words(st.log_path)}"
            if st.lost is None and st.stopping is None:
                if -code in STOP_SIGNALS or code - 128 in STOP_SIGNALS:
                    self._stopping(st, why)
                else:
                    self._lose(st, why)
        return n

    def _stopping(self, st: _Node, reason: str) -> None:
        """An agent stopped by a stop signal (SIGTERM...) is most likely the allocation ending:
        Slurm signals every process of the job, agents and this manager alike. Its node is lost
        only ``HOLD`` seconds later, so that the run's own stop, which comes with the same
        signal, finds the node's tasks and its queued work and ends them as interrupted (to run
        on resume), not as work lost with a node or no longer fitting (FAILED). No new task goes
        there meanwhile. If no stop comes, the node is lost as any other."""
        st.stopping = (time.time() + HOLD, reason)
        log.warning("node %s: %s; it is lost in %.0fs unless the run stops (the allocation ending?)",
                    st.name, reason, HOLD)

    def _lose(self, st: _Node, reason: str) -> None:
        if st.lost is not None:
            return
        st.lost = reason
        was_ready = st.ident is not None
        log.error("node %s lost: %s", st.name, reason)
        if st.ident is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.router.send_multipart([st.ident, wire.encode(wire.KillNow()), wire.encode(wire.Bye(reason))])
            self._by_ident.pop(st.ident, None)
        if was_ready or self.started_in is not None:
            self._emit(st.name, False, reason)
        now = time.time()
        exits = []
        for task_id, started in list(st.tasks.items()):
            st.tasks.pop(task_id)
            self._where.pop(task_id, None)
            exits.append(TaskExit(task_id, LOST_EXIT_CODE, started or now, now, f"node {st.name} lost: {reason}",
                                  lost=True))
        if exits:  # fenced: reported once the node's tasks are surely dead, so they never run twice at once
            bound = self.heartbeat * self.misses + guard.BOUND
            log.warning("node %s: %d task(s) run again elsewhere in %.0fs, once they are surely dead (its agent "
                        "kills them when it hears nothing from here for %.0fs, its guard when it dies)",
                        st.name, len(exits), bound, self.heartbeat * self.misses)
            self._fenced.append((now + bound, exits))
        _stop(st.proc, 0.0)

    # ---- the end ----

    def close(self) -> None:
        for st in self.nodes.values():
            if st.ready:
                with contextlib.suppress(zmq.ZMQError):
                    self.router.send_multipart([st.ident, wire.encode(wire.Bye("the service is finishing"))])
        deadline = time.monotonic() + 5.0
        for st in self.nodes.values():
            _stop(st.proc, max(0.0, deadline - time.monotonic()))
        for fd in list(self._by_fd):
            os.close(fd)
        self._by_fd.clear()
        self._epoll.close()
        self.router.close(linger=0)


def _stop(proc: Optional[subprocess.Popen], wait: float) -> None:
    """Let the starter end by itself within ``wait``, then SIGTERM (srun ends the step), then SIGKILL."""
    if proc is None:
        return
    for sig, grace in ((None, wait), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if sig is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _exit_status(code: int) -> str:
    """An exit code as a user reads it: a signal named (killed by it, or the shell's 128 + its
    number, which an agent stopped by a signal returns)."""
    for number, how in ((-code, "killed by"), (code - 128, "stopped by")):
        if number > 0:
            with contextlib.suppress(ValueError):
                return f"exit code {code}: {how} signal {signal.Signals(number).name}"
    return f"exit code {code}"


def _last_words(path: str) -> str:
    """The last meaningful line of an agent's log: usually srun's or ssh's own error."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    lines = [ln for ln in lines if "lacks support for cpu binding" not in ln]
    return f": {lines[-1][:300]}" if lines else ""


# ---- --disable-nl: one srun per task, no agents ----

# variables srun reads as its own options: a task's ch. 8 values must not steer the srun starting it
_SRUN_INPUTS = ("SLURM_NTASKS", "SLURM_NPROCS", "SLURM_NNODES", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE",
                "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE",
                "SLURM_CPU_BIND", "SLURM_HOSTFILE", "SLURM_DISTRIBUTION")


def srun_task_argv(req: LaunchRequest, srun: str = "srun") -> List[str]:
    argv = [srun, "--overlap", "-N1", "-n1", "--quiet", "--kill-on-bad-exit=1", "--job-name", req.task_id]
    if req.node:
        argv += ["-w", req.node]
    if req.cpus:
        argv.append(f"--cpu-bind=mask_cpu:{hex(sum(1 << c for c in set(req.cpus)))}")
    return [*argv, "--chdir", req.wd, "--", *req.argv]


class SrunLauncher(LocalLauncher):
    """``--disable-nl``: every task is its own ``srun`` step on its node (QCG-PilotJob's
    fallback; slower, since each step costs the controller a round trip)."""

    def __init__(self, grace: float = 3.0, srun: str = "srun", output: Optional[OutputStreams] = None) -> None:
        super().__init__(grace=grace, output=output)
        self._srun = srun
        # the guard's SIGKILL would end srun but not its step: SIGTERM first, which srun passes on
        self.guard_term_first = 0.5

    def launch(self, request: LaunchRequest) -> None:
        env = dict(request.env if request.env is not None else os.environ)
        for key in _SRUN_INPUTS:
            env.pop(key, None)
        super().launch(LaunchRequest(request.task_id, tuple(srun_task_argv(request, self._srun)), env, request.wd,
                                     request.stdin, request.stdout, request.stderr, None, request.walltime,
                                     request.node))
