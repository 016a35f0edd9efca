"""The guard: kills a launcher's tasks when the launcher's process dies, ``kill -9`` included.

A task runs in its own session, so nothing the kernel does on its own ends it when the
process that started it dies (``PR_SET_PDEATHSIG`` reaches only the direct child, never
the processes a script starts, and cgroups are not ours to use on a shared node).  So every
launcher starts one guard: a small process in a session of its own that blocks reading a
pipe whose only write end the launcher holds.  The kernel closes that end when the
launcher's process ends, however it ends, and the guard's read returns; the guard then

1. kills the process group of every task the launcher told it about (``+PID`` when a task
   starts, ``-PID`` when it is reaped: each task leads its own group), and
2. kills every process whose environment carries the launcher's token
   (``HPILOT_GUARD=<token>``, set in each task's environment): that catches a task started
   just before the launcher died, before it could say so, and processes a task moved into
   sessions of their own.

Then it exits.  It ignores SIGTERM, SIGINT and SIGHUP (a Ctrl-C or Slurm's SIGTERM to the
whole step must not take it down before the launcher), so only its end of the pipe, or a
SIGKILL, ends it.  Nothing can miss: the pipe's end is the kernel's doing, and the guard
does nothing but wait for it.

This module runs two ways: imported, :class:`Guard` is the launcher's side (start the
guard, tell it about tasks, stop it); run as a script (``python -I -S guard.py FD TOKEN``)
it is the guard, with the standard library only, so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    import logging

ENV = "HPILOT_GUARD"
# Once a launcher's process is known dead, its tasks are: the guard wakes at once and kills
# them; this is the bound others wait before counting on it (a loaded node's scheduling delay).
BOUND = 1.0
FLUSH_EVERY = 0.1  # seconds between the launcher's writes to its guard, at most


# ---- the launcher's side ----


class Guard:
    """The guard of one launcher: :meth:`watch` and :meth:`forget` each task's process group
    (written in batches by :meth:`flush`, one write per 0.1 s at most), :meth:`close` when the launcher
    is done.  If the guard cannot be started (no ``/proc``, no interpreter), the launcher
    runs unguarded and says so once in its log."""

    def __init__(self, token: Optional[str] = None, term_first: float = 0.0) -> None:
        self.token = token or os.urandom(8).hex()
        self.term_first = term_first
        self._pending: List[bytes] = []
        self._live: Dict[int, None] = {}  # task process groups not yet reaped (for a restart)
        self._fd = -1
        self.pid = 0
        self._flushed = 0.0
        self._start()

    def _start(self) -> None:
        r, w = os.pipe()  # both ends close-on-exec: no task ever holds them
        try:
            argv = [sys.executable, "-I", "-S", __file__, "3", self.token, str(self.term_first)]
            actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                       (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                       (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                       (os.POSIX_SPAWN_DUP2, r, 3)]
            # our environment: whoever looks for this run's processes by it finds the guard too
            self.pid = os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions, setsid=True)
        except OSError as e:
            os.close(w)
            _log().error("cannot start the task guard (%s): tasks of this launcher may outlive it if it is "
                         "killed", e)
            return
        finally:
            os.close(r)
        os.set_blocking(w, False)  # a stopped guard must never stall the launcher
        self._fd = w
        if self._live:  # a restart: the new guard learns every task still running
            self._pending = [b"+%d\n" % pid for pid in self._live]
            self.flush(force=True)

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def env(self, env: Dict[str, str]) -> Dict[str, str]:
        """Mark a task's environment (the launcher's own copy for this task) with the token."""
        env[ENV] = self.token
        return env

    def watch(self, pid: int) -> None:
        self._live[pid] = None
        self._pending.append(b"+%d\n" % pid)

    def forget(self, pid: int) -> None:
        if self._live.pop(pid, 0) is None:
            self._pending.append(b"-%d\n" % pid)

    def flush(self, force: bool = False) -> None:
        """At most one write every FLUSH_EVERY seconds (each write wakes the guard, which costs CPU
        the tasks could use).  A task started since the last write is still found by its token,
        should the launcher die in between."""
        if not self._pending or self._fd < 0:
            return
        now = time.monotonic()
        if not force and now - self._flushed < FLUSH_EVERY:
            return
        self._flushed = now
        data = b"".join(self._pending)
        try:
            n = os.write(self._fd, data)
        except BlockingIOError:  # the guard is behind (or stopped): keep it for the next pass
            return
        except BrokenPipeError:  # someone killed the guard: a new one, told about every task
            _log().error("the task guard (pid %d) is gone: starting a new one", self.pid)
            os.close(self._fd)
            self._fd = -1
            self._reap()
            self._pending = []
            self._start()
            return
        self._pending = [data[n:]] if n < len(data) else []

    def close(self, wait: float = 2.0) -> None:
        """The launcher is done (it killed its tasks): the guard sweeps once more and exits."""
        if self._fd < 0:
            return
        self._live.clear()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1
        deadline = time.monotonic() + wait
        while not self._reap() and time.monotonic() < deadline:
            time.sleep(0.002)

    def _reap(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return True
        return pid != 0


def _log() -> logging.Logger:
    import logging  # only on trouble: the guard's own start-up imports nothing it does not need

    return logging.getLogger("hpilot.launcher")


# ---- the guard itself ----


def sweep(marker: bytes, exclude: Sequence[int] = ()) -> int:
    """SIGKILL every process whose environment holds ``marker`` (``NAME=VALUE``), repeated
    while it finds some (a process may fork while the first pass kills); how many were killed."""
    needle = b"\0" + marker + b"\0"
    skip = {os.getpid(), *exclude}
    total = 0
    for _ in range(5):
        found = 0
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in skip:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    environ = b"\0" + f.read()
            except OSError:
                continue
            if needle in environ + b"\0":
                with contextlib.suppress(OSError):
                    os.kill(int(name), signal.SIGKILL)
                    found += 1
        total += found
        if not found:
            break
    return total


def _kill_groups(groups: Dict[int, None], term_first: float) -> None:
    if term_first > 0:  # srun steps: srun passes SIGTERM on to the step's tasks
        for pg in groups:
            with contextlib.suppress(OSError):
                os.killpg(pg, signal.SIGTERM)
        time.sleep(term_first)
    for pg in groups:
        with contextlib.suppress(OSError):
            os.killpg(pg, signal.SIGKILL)


def main(argv: List[str]) -> int:
    if argv[1:2] == ["--sweep"]:  # a resume's errand on a node: kill what a dead run left (by its marker)
        print(sweep(argv[2].encode()), flush=True)
        return 0
    fd, token = int(argv[1]), argv[2].encode()
    term_first = float(argv[3]) if len(argv) > 3 else 0.0
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    groups: Dict[int, None] = {}
    rest = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data:
            break
        lines = (rest + data).split(b"\n")
        rest = lines.pop()
        for line in lines:
            try:
                pid = int(line[1:])
            except ValueError:
                continue
            if line[:1] == b"+":
                groups[pid] = None
            else:
                groups.pop(pid, None)
    _kill_groups(groups, term_first)
    sweep(ENV.encode() + b"=" + token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
