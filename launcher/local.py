"""The local launcher shell: starts tasks as processes of this machine.

Exits wake the owner's poll loop without polling: each child gets a pidfd, and all
pidfds sit in one epoll set whose own descriptor the owner polls together with its
sockets.  A task runs in its own session (process group), so a cancel or a wall
time kill reaches the processes a script started, not just the script.

No task outlives this launcher's process: a guard (:mod:`guard`), started with the first
task, kills every task's process group when this process dies, ``kill -9`` included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import shutil
import signal
import subprocess
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

from hpilot.launcher.api import LauncherEvent, TaskStarted
from hpilot.launcher.core import (
    Action,
    Event,
    Exited,
    Kill,
    Launch,
    LauncherCore,
    LaunchRequest,
    Paused,
    Report,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    TaskExit,
    Tick,
)
from hpilot.launcher.guard import ENV as GUARD_ENV
from hpilot.launcher.guard import Guard
from hpilot.launcher.private import WriteFailure

if TYPE_CHECKING:  # imported only with --enable-rt-stats/--enable-proc-stats (psutil costs start-up time)
    from hpilot.launcher.output import OutputStreams
    from hpilot.launcher.procstats import ProcSampler
    from hpilot.launcher.rtstats import RtStats

log = logging.getLogger("hpilot.launcher")

HAVE_PIDFD = hasattr(os, "pidfd_open")
HAVE_POSIX_SPAWN = hasattr(os, "posix_spawn") and hasattr(os, "POSIX_SPAWN_OPEN")


class _Child:
    __slots__ = ("pid", "proc", "fd", "files")

    def __init__(self, pid: int, proc: Optional[subprocess.Popen], fd: int, files: List[IO[bytes]]) -> None:
        self.pid = pid
        self.proc = proc  # None when started by posix_spawn
        self.fd = fd
        self.files = files

    def poll(self) -> Optional[int]:
        if self.proc is not None:
            return self.proc.poll()
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        return None if pid == 0 else os.waitstatus_to_exitcode(status)

    def wait(self) -> int:
        if self.proc is not None:
            return self.proc.wait()
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


class LocalLauncher:
    """Runs :class:`LaunchRequest` s; :meth:`poll` returns their starts and exits."""

    def __init__(
        self,
        grace: float = 3.0,
        clock: Callable[[], float] = time.time,
        rtstats: Optional[RtStats] = None,
        procstats: Optional[ProcSampler] = None,
        output: Optional[OutputStreams] = None,
    ) -> None:
        self.core = LauncherCore(grace)
        self.output = output  # tasks' stdout/stderr streamed into one file (launcher/output.py)
        self._tails: Dict[str, bytes] = {}  # stderr tails of exits being reported
        self.rtstats = rtstats
        self.procstats = procstats
        self._seen_mono = 0.0  # when the exit being reported was seen (monotonic clock)
        self._queued: List[LaunchRequest] = []  # launched, started by the next poll()
        self._events: List[LauncherEvent] = []
        self.clock = clock
        self._children: Dict[str, _Child] = {}
        self._by_fd: Dict[int, str] = {}
        self._made_dirs: Set[str] = set()
        self._exe_cache: Dict[Tuple[str, Optional[str]], str] = {}
        self._epoll = select.epoll() if HAVE_PIDFD else None
        self.guard: Optional[Guard] = None  # started with the first task (guard.py)
        self.guard_term_first = 0.0  # seconds between the guard's SIGTERM and SIGKILL (0: SIGKILL only)
        self._affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        if output is not None and self._epoll is not None:  # task output wakes the owner too
            self._epoll.register(output.fileno(), select.EPOLLIN)
        # The record pipe is not polled: a wrapper writes its record before it exits, so
        # draining it whenever exits are reaped finds every record, with no extra wake-up.

    # ---- the owner's loop ----

    def fileno(self) -> int:
        """Readable when some child has exited (poll it with the sockets)."""
        return self._epoll.fileno() if self._epoll is not None else -1

    @property
    def needs_polling(self) -> bool:
        """Without pidfds the owner must call :meth:`reap` every few ms while tasks run."""
        return self._epoll is None and bool(self._children)

    def next_deadline(self) -> Optional[float]:
        deadline = self.core.next_deadline()
        if self.procstats is not None and self._children:
            due = self.procstats.due(self.clock())
            deadline = due if deadline is None else min(deadline, due)
        return deadline

    @property
    def write_failure(self) -> Optional[WriteFailure]:
        """A file of this launcher that could not be written (its tasks' output): the run must stop."""
        return self.output.failed if self.output is not None else None

    @property
    def running(self) -> int:
        return len(self.core.running) + len(self._queued) + len(self.core.held)

    def launch(self, request: LaunchRequest) -> None:
        self._queued.append(request)

    def start_queued(self) -> None:
        """Start what was launched (``poll`` does this first)."""
        if self._queued:
            queued, self._queued = self._queued, []
            for req in queued:
                self._feed(Launch(req))

    def poll(self) -> List[LauncherEvent]:
        self.start_queued()
        self.reap()
        deadline = self.next_deadline()
        if deadline is not None and deadline <= self.clock():
            self.tick()
        if self.guard is not None:
            self.guard.flush()  # the starts and ends since its last write, in one (every 0.1 s at most)
        return self.take_events()

    def take_events(self) -> List[LauncherEvent]:
        events, self._events = self._events, []
        return events

    def kill(self, task_id: str, reason: str) -> None:
        # An exit that happened before the kill is the task's own end: collected first, a task
        # that finished just as the run stopped is not reported killed (and run again on resume).
        self.reap()
        self._kill(task_id, reason)

    def _kill(self, task_id: str, reason: str) -> None:
        for i, req in enumerate(self._queued):
            if req.task_id == task_id:  # never started: it ends here and now
                del self._queued[i]
                now = self.clock()
                self._events.append(TaskExit(task_id, -signal.SIGKILL, now, now, reason))
                return
        self._feed(Kill(task_id, reason, self.clock()))

    def kill_all(self, reason: str) -> None:
        self.reap()
        for task_id in [*self.core.running, *self.core.held]:
            self._kill(task_id, reason)

    def paused(self, seconds: float) -> None:
        self._feed(Paused(seconds))

    def kill_now(self) -> None:
        """SIGKILL every task without waiting for the grace period (a second Ctrl-C)."""
        for req in self._queued:
            now = self.clock()
            self._events.append(TaskExit(req.task_id, -signal.SIGKILL, now, now, "killed before it started"))
        self._queued.clear()
        for child in self._children.values():
            _killpg(child.pid, signal.SIGKILL)

    def tick(self) -> None:
        now = self.clock()
        if self.procstats is not None and self._children and self.procstats.due(now) <= now:
            self.procstats.sample([(t, c.pid) for t, c in self._children.items()], now)
        self._feed(Tick(now))

    def reap(self) -> int:
        """Collect every child that has exited; returns how many."""
        out = self.output
        if out is not None:
            out.pump()
        if self._epoll is not None:
            ready = [self._by_fd[fd] for fd, _ in self._epoll.poll(0) if fd in self._by_fd]
        else:
            ready = [t for t, c in self._children.items() if c.poll() is not None]
        rt = self.rtstats
        if rt is not None:
            rt.drain()  # after the exits were seen: their records are in the pipe by now
        for task_id in ready:
            child = self._children.pop(task_id)
            rc = child.wait()
            now = self.clock()
            if rt is not None:
                self._seen_mono = time.monotonic()
                if rc > 128:
                    sig = rt.signal_of(task_id)
                    if sig is not None and rc == 128 + sig:
                        rc = -sig  # the wrapper's 128+N: report "killed by signal N" as without it
            # What the task left running in its process group ends with it, as processes
            # of a Slurm job step do when the step ends.
            _killpg(child.pid, signal.SIGKILL, leader_gone=True)
            if self.guard is not None:
                self.guard.forget(child.pid)
            self._forget(child)
            if out is not None:  # what it wrote before it exited is in its pipes: read it all now
                tail = out.ended(task_id)
                if tail:
                    self._tails[task_id] = tail
            self._feed(Exited(task_id, rc, now))
        if out is not None:
            out.flush()  # one write per loop pass: a kill of hpilot loses no output it had read
        return len(ready)

    def close(self) -> None:
        """Kill whatever still runs, at once, and wait for it (used on shutdown)."""
        self._queued.clear()
        for task_id, child in list(self._children.items()):
            _killpg(child.pid, signal.SIGKILL)
            child.wait()
            self._children.pop(task_id)
            self._forget(child)
            if self.rtstats is not None:
                self.rtstats.ended(task_id, 128 + signal.SIGKILL, "killed at shutdown", self.clock(),
                                   time.monotonic())
        if self.rtstats is not None:
            self.rtstats.close()
        if self.procstats is not None:
            self.procstats.close()
        if self.output is not None:
            self.output.close()
        if self._epoll is not None:
            self._epoll.close()
        if self.guard is not None:
            self.guard.close()

    # ---- carrying out the core's actions ----

    def _feed(self, ev: Event) -> None:
        for action in self.core.handle(ev):
            self._do(action)

    def _do(self, action: Action) -> None:
        if isinstance(action, Spawn):
            self._spawn(action.request)
        elif isinstance(action, Signal):
            child = self._children.get(action.task_id)
            if child is not None:
                _killpg(child.pid, action.signum)
        elif isinstance(action, Report):
            ex = action.exit
            if self.rtstats is not None:
                self.rtstats.ended(ex.task_id, ex.exit_code, ex.reason, ex.finished, self._seen_mono)
            tail = self._tails.pop(ex.task_id, None) if self._tails else None
            if tail is not None and not ex.ok:  # a failure carries what it last said on stderr
                from hpilot.launcher.output import tail_text

                ex = dataclasses.replace(ex, stderr_tail=tail_text(tail))
            self._events.append(ex)

    def _guarded(self, req: LaunchRequest) -> LaunchRequest:
        """The request with the guard's token in its environment (the guard starts with the first task)."""
        if self.guard is None:
            _no_inheritable_fds()  # the guard must hold nothing of ours but its pipe
            self.guard = Guard(term_first=self.guard_term_first)
        if not self.guard.active:
            return req
        env = req.env if req.env is not None else dict(os.environ)
        env[GUARD_ENV] = self.guard.token  # the request's own dict: built for this one launch
        return req if req.env is env else dataclasses.replace(req, env=env)

    def _spawn(self, req: LaunchRequest) -> None:
        files: List[IO[bytes]] = []
        pipes: Tuple[Optional[int], Optional[int]] = (None, None)
        req = self._guarded(req)
        try:
            if self.output is not None:
                pipes = self.output.open(req)
            if req.wd not in self._made_dirs:
                os.makedirs(req.wd, exist_ok=True)
                self._made_dirs.add(req.wd)
            if self.rtstats is not None:  # the wrapper binds the CPUs itself
                spawn_rt, spawn_mono = time.time(), time.monotonic()
                if HAVE_POSIX_SPAWN and req.wd == os.getcwd():
                    pid, proc = self._posix_spawn(req, self.rtstats, pipes), None
                else:
                    proc = self._popen(req, files, self.rtstats, pipes)
                    pid = proc.pid
                self.rtstats.started(req, pid, spawn_rt, spawn_mono)
            else:
                with self._bound(req):
                    if HAVE_POSIX_SPAWN and req.wd == os.getcwd():
                        pid, proc = self._posix_spawn(req, None, pipes), None
                    else:
                        proc = self._popen(req, files, None, pipes)
                        pid = proc.pid
        except OSError as e:
            for f in files:
                f.close()
            if self.output is not None:
                self.output.spawned(req.task_id, ok=False)
            code = 126 if isinstance(e, PermissionError) else 127
            self._feed(SpawnFailed(req.task_id, f"could not start: {_oserror(e)}", self.clock(), code))
            return
        if self.guard is not None:
            self.guard.watch(pid)
        if self.output is not None:
            self.output.spawned(req.task_id)
        fd = -1
        if self._epoll is not None:
            fd = os.pidfd_open(pid)
            self._epoll.register(fd, select.EPOLLIN)
            self._by_fd[fd] = req.task_id
        self._children[req.task_id] = _Child(pid, proc, fd, files)
        now = self.clock()
        self._feed(Spawned(req.task_id, pid, now))
        self._events.append(TaskStarted(req.task_id, pid, now))

    @contextlib.contextmanager
    def _bound(self, req: LaunchRequest) -> Iterator[None]:
        """Spawn with the task's CPU mask: the child inherits the spawning thread's
        mask, so binding costs two syscalls here and no extra process (no taskset)."""
        bound = False
        if req.cpus and self._affinity is not None:
            try:
                os.sched_setaffinity(0, req.cpus)
                bound = True
            except OSError as e:
                log.warning("task %s: cannot bind to cores %s: %s", req.task_id, req.cpus, e)
        try:
            yield
        finally:
            if bound:
                os.sched_setaffinity(0, self._affinity)  # type: ignore[arg-type]

    def _posix_spawn(self, req: LaunchRequest, rt: Optional[RtStats] = None,
                     pipes: Tuple[Optional[int], Optional[int]] = (None, None)) -> int:
        """The fast path (no chdir needed): posix_spawn converts the environment in C
        and starts the child with vfork semantics; the files are opened by the child.
        With ``rt`` the child is the wrapper, its record pipe as descriptor 3."""
        env = req.env if req.env is not None else os.environ
        exe = self._which(req.argv[0], env.get("PATH"))
        argv: List[str] = list(req.argv)
        if rt is not None:
            argv = rt.argv(req, exe, 3)
            exe = rt.wrapper
        if req.stdin and not os.path.exists(req.stdin):  # the child's open would not name it
            raise FileNotFoundError(2, "No such file or directory (stdin)", req.stdin)
        out_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        out, err = pipes  # streamed output (launcher/output.py): the pipes' write ends
        actions: List[Tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, req.stdin or os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, out, 1) if out is not None else
            (os.POSIX_SPAWN_OPEN, 1, req.stdout or os.devnull, out_flags, 0o666),
        ]
        if req.stderr and req.stderr == req.stdout:
            actions.append((os.POSIX_SPAWN_DUP2, 1, 2))
        elif err is not None:
            actions.append((os.POSIX_SPAWN_DUP2, err, 2))
        else:
            actions.append((os.POSIX_SPAWN_OPEN, 2, req.stderr or os.devnull, out_flags, 0o666))
        if rt is not None:
            actions.append((os.POSIX_SPAWN_DUP2, rt.write_fd, 3))
        else:  # the wrapper marks every descriptor above 2 close-on-exec for its task itself
            _no_inheritable_fds()
        # Python ignores SIGPIPE and SIGXFSZ; a task must get the defaults (Popen's restore_signals).
        try:
            return os.posix_spawn(exe, argv, env, file_actions=actions, setsid=True,
                                  setsigdef=_DEFAULT_SIGNALS)
        except OSError as e:  # it names the program even when the child could not open an output file
            raise _blame_outputs(req, pipes, e) from None

    def _which(self, program: str, path: Optional[str]) -> str:
        """argv[0] resolved in the task's own PATH (posix_spawnp would use ours)."""
        if "/" in program:
            return program
        key = (program, path)
        found = self._exe_cache.get(key)
        if found is None:
            found = shutil.which(program, path=path if path is not None else os.defpath)
            if found is None:
                raise FileNotFoundError(2, "No such file or directory", program)
            self._exe_cache[key] = found
        return found

    def _popen(self, req: LaunchRequest, files: List[IO[bytes]], rt: Optional[RtStats] = None,
               pipes: Tuple[Optional[int], Optional[int]] = (None, None)) -> subprocess.Popen:
        stdin = _open(files, req.stdin, "rb") if req.stdin else subprocess.DEVNULL
        stdout: Union[int, IO[bytes]] = _open(files, req.stdout, "wb") if req.stdout else (
            pipes[0] if pipes[0] is not None else subprocess.DEVNULL)
        stderr: Union[int, IO[bytes]]
        if req.stderr and req.stderr == req.stdout:
            stderr = stdout
        else:
            stderr = _open(files, req.stderr, "wb") if req.stderr else (
                pipes[1] if pipes[1] is not None else subprocess.DEVNULL)
        argv: List[str] = list(req.argv)
        pass_fds: Tuple[int, ...] = ()
        if rt is not None:
            env = req.env if req.env is not None else os.environ
            exe = self._which(req.argv[0], env.get("PATH"))
            if "/" in exe and not os.path.isabs(exe) and not os.path.exists(os.path.join(req.wd, exe)):
                raise FileNotFoundError(2, "No such file or directory", req.argv[0])
            argv = rt.argv(req, exe, rt.write_fd)
            pass_fds = (rt.write_fd,)
        return subprocess.Popen(
            argv, cwd=req.wd, env=req.env, stdin=stdin, stdout=stdout,
            stderr=stderr, start_new_session=True, close_fds=True, pass_fds=pass_fds,
        )

    def _forget(self, child: _Child) -> None:
        if child.fd >= 0:
            self._by_fd.pop(child.fd, None)
            if self._epoll is not None:
                self._epoll.unregister(child.fd)
            os.close(child.fd)
        for f in child.files:
            f.close()


_DEFAULT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, n))


def _no_inheritable_fds() -> None:
    """posix_spawn has no close_fds: mark what the service inherited close-on-exec instead."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in fds:
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)


def _open(files: List[IO[bytes]], path: str, mode: str) -> IO[bytes]:
    f = open(path, mode)  # noqa: SIM115 - closed when the child is reaped
    files.append(f)
    return f


def _blame_outputs(req: LaunchRequest, pipes: Tuple[Optional[int], Optional[int]], e: OSError) -> OSError:
    """The error of the output file the child could not open, if one cannot be (it names the
    path), else ``e``.  Only after a failed spawn: the happy path pays nothing."""
    for path, piped in ((req.stdout, pipes[0]), (req.stderr, pipes[1])):
        if path and piped is None:
            try:
                os.close(os.open(os.path.join(req.wd, path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666))
            except OSError as fe:
                return fe
    return e


def _oserror(e: OSError) -> str:
    name = f": {e.filename!r}" if e.filename else ""
    return f"{e.strerror or e}{name}"


def _killpg(pid: int, sig: int, leader_gone: bool = False) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        if not leader_gone:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
