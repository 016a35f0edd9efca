"""Task output kept in a few files: the stdout/stderr that a job does not direct to a file.

Why not a file per task: 100,000 small files hurt a parallel file system (every create is a
metadata operation on a shared server); appends to a few files do not.  So every launcher
(the in-process one, a partition manager's, a node agent) streams the output of its tasks
into ONE file, ``<run>/output/<tag>.out``, created 0600, as framed records that a reader
can pick one task's output out of (:mod:`hpilot.launcher.outread`).

How a launcher uses it (LocalLauncher does exactly this):

1. ``pipes = streams.open(req)``: the write ends to give the child as its stdout and
   stderr (None where the request names a file: QCG-PilotJob's behaviour is kept);
2. after the spawn, ``streams.spawned(task_id, ok)`` closes the write ends here;
3. ``streams.fileno()`` is polled with the launcher's other descriptors; ``streams.pump()``
   reads what is ready (the owner's loop calls it through the launcher's ``reap``), and
   ``streams.flush()`` at the end of each loop pass hands what was read to the kernel in
   one ``write()`` (as the journal does: a kill of hpilot then loses no output it had read;
   the page cache, or a parallel file system's client cache, merges the small appends);
4. when the task's exit is seen: ``tail = streams.ended(task_id)`` drains the rest (what a
   task wrote before it exited is in the pipe by then) and returns the end of its stderr;
   if the task failed, ``tail_text(tail)`` is its ``TaskExit.stderr_tail``;
5. ``close()`` at the end.

The file format (version 1), so that it can be appended to by one writer and read while it
grows: a first line ``hpilot-output 1 <tag>``, then records, each a header line
``<kind> <serial> <length>[ <start time>]``, ``length`` bytes of payload and a newline.  Kind ``T``
names a task (payload: the task id, e.g. ``sweep:3``; written before its first output, with
the time it started), ``o`` and ``e`` are chunks of its stdout and stderr.  The serial
tells the tasks of one file apart; a record cut short at the end (a kill) is ignored.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from hpilot.launcher.core import LaunchRequest
from hpilot.launcher.private import WriteFailure

FORMAT = b"hpilot-output"
VERSION = 1
TAIL_BYTES = 4096  # the stderr kept in memory per running task, for a failure's last lines
TAIL_LINES = 8
TAIL_CHARS = 2000
READ_SIZE = 1 << 16


# srun's own report of a step's end (a task started by srun: --disable-nl, srunmpi): the exit
# code is reported anyway, so it is left out of a failure's last lines, which are the task's
_SRUN_EXIT = re.compile(r"^srun: error: \S+: tasks? [0-9,-]+: (Exited with exit code \d+|Killed|Terminated)")


def tail_text(data: bytes, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> Optional[str]:
    """The last ``lines`` lines of ``data`` (at most ``chars`` characters), or None if blank."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    kept = [ln.rstrip() for ln in text.rstrip().split("\n") if not _SRUN_EXIT.match(ln)][-lines:]
    while kept and not kept[0].strip():
        kept.pop(0)
    out = "\n".join(kept)[-chars:]
    return out or None


class _Task:
    __slots__ = ("serial", "task_id", "start", "named", "fds", "writers", "tail")

    def __init__(self, serial: int, task_id: str, start: float) -> None:
        self.serial = serial
        self.task_id = task_id
        self.start = start
        self.named = False  # its T record is written (at its first output)
        self.fds: Dict[int, bytes] = {}  # read end -> b"o" | b"e", while open
        self.writers: List[int] = []  # write ends, until the child has them
        self.tail = bytearray()


class OutputStreams:
    """One launcher's task output, streamed into ``<out_dir>/<tag>.out``."""

    def __init__(self, out_dir: str, tag: str, flush_bytes: int = 1 << 20,
                 clock: Callable[[], float] = time.time) -> None:
        os.makedirs(out_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(out_dir, f"{tag}.out")
        self.flush_bytes = flush_bytes  # a pass that reads more than this writes it at once
        self.clock = clock
        # 0600 from the start: the output of a user's tasks is theirs alone
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._epoll = select.epoll()
        self._tasks: Dict[str, _Task] = {}
        self._by_fd: Dict[int, _Task] = {}
        self._serial = 0
        self._buf: List[bytes] = []
        self._size = 0
        self.failed: Optional[WriteFailure] = None  # the first write that failed (the owner stops the run)
        if os.fstat(self._fd).st_size == 0:
            self._write([b"%s %d %s\n" % (FORMAT, VERSION, tag.encode())])
        self.bytes_written = 0

    # ---- spawning ----

    def open(self, req: LaunchRequest) -> Tuple[Optional[int], Optional[int]]:
        """The descriptors the child gets as stdout and stderr (None: the request names a file)."""
        want_out = not req.stdout
        want_err = not req.stderr
        if not (want_out or want_err):
            return None, None
        self._serial += 1
        task = _Task(self._serial, req.task_id, self.clock())
        ends: List[Optional[int]] = []
        try:
            for kind, wanted in ((b"o", want_out), (b"e", want_err)):
                if not wanted:
                    ends.append(None)
                    continue
                r, w = os.pipe2(os.O_CLOEXEC)
                os.set_blocking(r, False)
                task.fds[r] = kind
                task.writers.append(w)
                ends.append(w)
        except OSError:
            self._discard(task)
            raise
        self._tasks[req.task_id] = task
        for r in task.fds:
            self._by_fd[r] = task
            self._epoll.register(r, select.EPOLLIN)
        return ends[0], ends[1]

    def spawned(self, task_id: str, ok: bool = True) -> None:
        """The child has its copies of the write ends (or never started: ``ok`` False)."""
        task = self._tasks.get(task_id)
        if task is None:
            return
        for w in task.writers:
            os.close(w)
        task.writers = []
        if not ok:
            self._tasks.pop(task_id, None)
            for r in list(task.fds):
                self._close(task, r)

    # ---- reading ----

    def fileno(self) -> int:
        """Readable when some task has written something."""
        return self._epoll.fileno()

    def pump(self) -> int:
        """Read whatever tasks have written; returns how many descriptors were ready."""
        ready = self._epoll.poll(0)
        for fd, _ in ready:
            task = self._by_fd.get(fd)
            if task is not None:
                self._read(task, fd, once=True)
        return len(ready)

    def ended(self, task_id: str) -> Optional[bytes]:
        """The task exited: read the rest of its output and close its pipes; returns the end
        of what it wrote on stderr (for :func:`tail_text` if it failed), None if nothing."""
        task = self._tasks.pop(task_id, None)
        if task is None:
            return None
        for w in task.writers:  # never handed over (should not happen): no EOF otherwise
            os.close(w)
        task.writers = []
        for fd in list(task.fds):
            self._read(task, fd, once=False)
            if fd in task.fds:  # a process the task left behind still holds the pipe: not waited for
                self._close(task, fd)
        return bytes(task.tail) if task.tail else None

    def _read(self, task: _Task, fd: int, once: bool) -> None:
        kind = task.fds[fd]
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                data = b""
            if not data:
                self._close(task, fd)
                return
            self._record(task, kind, data)
            if once:
                return

    def _record(self, task: _Task, kind: bytes, data: bytes) -> None:
        if not task.named:
            task.named = True
            name = task.task_id.encode("utf-8", errors="replace")
            self._add(b"T %d %d %.6f\n" % (task.serial, len(name), task.start), name)
        self._add(b"%s %d %d\n" % (kind, task.serial, len(data)), data)
        if kind == b"e":
            tail = task.tail
            tail += data
            if len(tail) > TAIL_BYTES:
                del tail[:len(tail) - TAIL_BYTES]

    def _close(self, task: _Task, fd: int) -> None:
        task.fds.pop(fd, None)
        self._by_fd.pop(fd, None)
        # unregister before the close: a closed descriptor leaves the epoll set only when no other
        # reference to the pipe end remains, and measured (W1), relying on that cost 15% more CPU
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)
        os.close(fd)

    def _discard(self, task: _Task) -> None:
        for fd in list(task.fds):
            os.close(fd)
        for w in task.writers:
            os.close(w)
        task.fds.clear()
        task.writers = []

    # ---- writing ----

    def _add(self, header: bytes, payload: bytes) -> None:
        self._buf.append(header)
        self._buf.append(payload)
        self._buf.append(b"\n")  # not part of the payload: keeps the file readable with less
        self._size += len(header) + len(payload) + 1
        if self._size >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        """Whole records only, in one write: a reader never sees half of one unless a write is cut."""
        if self._buf:
            self._write(self._buf)
            self.bytes_written += self._size
            self._buf, self._size = [], 0

    def _write(self, chunks: List[bytes]) -> None:
        if self.failed is not None:  # the file cannot be written: what the tasks write is lost from here on
            return
        data = memoryview(b"".join(chunks))
        try:
            while data:
                n = os.write(self._fd, data)
                data = data[n:]
        except OSError as e:
            self.failed = WriteFailure.of(self.path, e)

    def close(self) -> None:
        """Read what is left of every task, write it, and close."""
        for task_id in list(self._tasks):
            self.ended(task_id)
        self.flush()
        self._epoll.close()
        os.close(self._fd)


def output_dir(run_dir: str) -> str:
    """Where a run's streamed output goes: ``<run dir>/output``."""
    return os.path.join(run_dir, "output")


# ---- reading it back (``hpilot log``): after the run, during it, across a resume ----


class Attempt:
    """One run of one task as a file recorded it: its stdout and stderr, in the order written."""

    __slots__ = ("task_id", "start", "file", "chunks")

    def __init__(self, task_id: str, start: float, file: str) -> None:
        self.task_id = task_id
        self.start = start
        self.file = file
        self.chunks: List[Tuple[str, bytes]] = []  # ("o" | "e", bytes)

    def text(self, kinds: str = "oe") -> bytes:
        return b"".join(data for kind, data in self.chunks if kind in kinds)


def scan(path: str, wanted: Callable[[str], bool]) -> Tuple[List[Attempt], bool]:
    """The attempts of the tasks ``wanted`` accepts in one output file, and whether the file
    ended in a record cut short (a kill while writing, or a writer still at it)."""
    import mmap

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return [], False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            first = mm.find(b"\n")
            head = mm[:first].split(b" ") if first > 0 else []
            if len(head) < 2 or head[0] != FORMAT:
                raise ValueError(f"{path}: not an hpilot output file")
            if int(head[1]) != VERSION:
                raise ValueError(f"{path}: output format {int(head[1])}; this hpilot reads {VERSION}")
            return _records(mm, first + 1, size, path, wanted)


def _records(mm: Any, pos: int, size: int, path: str, wanted: Callable[[str], bool]) -> Tuple[List[Attempt], bool]:
    found: Dict[int, Attempt] = {}
    skip: set = set()  # serials of tasks not wanted
    out: List[Attempt] = []
    find = mm.find
    while pos < size:
        nl = find(b"\n", pos, pos + 128)
        if nl < 0:
            return out, True
        parts = mm[pos:nl].split(b" ")
        try:
            kind, serial, n = parts[0], int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            return out, True  # not a record header: stop here rather than misread
        end = nl + 1 + n
        if end + 1 > size:
            return out, True
        if kind == b"T":
            name = mm[nl + 1:end].decode("utf-8", errors="replace")
            if wanted(name):
                found[serial] = Attempt(name, float(parts[3]) if len(parts) > 3 else 0.0, path)
                out.append(found[serial])
            else:
                skip.add(serial)
        elif serial not in skip:
            got = found.get(serial)
            if got is not None:
                got.chunks.append(("o" if kind == b"o" else "e", mm[nl + 1:end]))
        pos = end + 1
    return out, False


def read_output(out_dir: str, wanted: Callable[[str], bool]) -> Tuple[Dict[str, List[Attempt]], List[str]]:
    """Every recorded attempt of the tasks ``wanted`` accepts, oldest first, from all the
    output files of a run (one per launcher, more after a resume); and notes on files that
    could not be read or end in a record cut short."""
    notes: List[str] = []
    by_task: Dict[str, List[Attempt]] = {}
    try:
        names = sorted(n for n in os.listdir(out_dir) if n.endswith(".out"))
    except FileNotFoundError:
        return by_task, notes
    for name in names:
        path = os.path.join(out_dir, name)
        try:
            attempts, cut = scan(path, wanted)
        except (OSError, ValueError) as e:
            notes.append(f"{name}: skipped: {e}")
            continue
        if cut:
            notes.append(f"{name}: ends in a record cut short (still being written, or the run was killed)")
        for a in attempts:
            by_task.setdefault(a.task_id, []).append(a)
    for attempts in by_task.values():
        attempts.sort(key=lambda a: a.start)
    return by_task, notes
