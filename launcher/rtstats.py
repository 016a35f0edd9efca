"""The launcher's side of the C wrapper (``--enable-rt-stats``): reusable by any launcher.

Why a pipe the launcher keeps open: every wrapper writes its one record with one
``write()`` of less than ``PIPE_BUF`` bytes to the write end of a pipe whose read
end the launcher polls.  The launcher holds a write end itself for the whole run,
so the reader never sees EOF and never re-opens anything -- the race through which
QCG-PilotJob's FIFO agent loses records cannot happen; a full pipe only makes a
wrapper wait.  Records are copied raw (no parsing on the hot path) to
``<run>/rtstats/wrapper-<tag>.jsonl``; the launcher adds its own view of each task
(spawn and exit-seen times, node, cores) to ``launch-<tag>.jsonl``.  ``hpilot
report`` joins the two by task id.

How a launcher uses it (LocalLauncher does exactly this; a node agent does the same):

1. ``rt = RtStats(find_wrapper(path), out_dir, tag)`` (``rt.fileno()`` need not be
   polled: a wrapper writes its record before it exits, so draining at each exit suffices);
2. to start a task run ``rt.argv(req, exe, fd)`` instead of ``req.argv``, with
   ``rt.write_fd`` available in the child as ``fd`` (dup2, or ``pass_fds``), and
   without binding the CPUs in Python (the wrapper's ``-c`` does it);
   then call ``rt.started(req, pid, spawn_rt, spawn_mono)`` (times taken just before spawning);
3. after seeing exits and before handling them, call ``rt.drain()``;
4. on a task's exit: ``rt.signal_of(task_id)`` tells whether the wrapper reported
   the task killed by a signal (the wrapper exits 128+N then), and
   ``rt.ended(task_id, exit_code, reason, end_rt, end_mono)`` writes the launch line;
5. ``rt.close()`` at the end (drains what is left).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

from hpilot.launcher import safejson
from hpilot.launcher.core import LaunchRequest
from hpilot.launcher.private import make_dir, open_private
from hpilot.launcher.procstats import ProcSampler

# fcntl names F_SETPIPE_SZ from Python 3.10 on; Linux has had it since 2.6.35 (F_LINUX_SPECIFIC_BASE + 7).
# Without it a 64 KiB pipe holds ~300 records, and more wrappers than that ending between two drains
# would all block on their write (and never exit, so no exit would trigger the drain).
_F_SETPIPE_SZ: Optional[int] = getattr(fcntl, "F_SETPIPE_SZ", 1031 if sys.platform.startswith("linux") else None)

WRAPPER_NAME = "hpilot-wrapper"
FORMAT_VERSION = 1
RECORD_LIMITS = safejson.Limits(max_bytes=4096, max_depth=2, max_digits=40)  # one write() < PIPE_BUF
_HERE = os.path.dirname(os.path.abspath(__file__))
# a source checkout (editable install): launcher/ next to wrapper_c/
_SOURCE = os.path.join(os.path.dirname(_HERE), "wrapper_c", "hpilot_wrapper.c")


class WrapperError(Exception):
    """The wrapper cannot be found, built or run; the message says what to do."""


def find_wrapper(path: Optional[str] = None) -> str:
    """The wrapper program: ``path`` (``--wrapper-rt-stats``), the one ``pip install``
    built into the package, or -- in a source checkout -- one built now from
    ``wrapper_c/`` into the user's cache (so an editable install needs no rebuild)."""
    if path:
        full = shutil.which(path) if "/" not in path else os.path.abspath(path)
        if not full or not os.path.isfile(full):
            raise WrapperError(f"--wrapper-rt-stats {path}: no such file")
        if not os.access(full, os.X_OK):
            raise WrapperError(f"--wrapper-rt-stats {path}: not executable")
        return full
    installed = os.path.join(_HERE, WRAPPER_NAME)
    if os.access(installed, os.X_OK):
        return installed
    if os.path.isfile(_SOURCE):
        return build_wrapper(_SOURCE, _cache_dir())
    raise WrapperError(
        "--enable-rt-stats: the C wrapper was not built when hpilot was installed (no C compiler then?); "
        "install a C compiler (cc) and reinstall hpilot, or give --wrapper-rt-stats PATH")


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hpilot")


def compiler() -> Optional[str]:
    cc = os.environ.get("CC")
    if cc:
        return cc
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build_wrapper(source: str, out_dir: str) -> str:
    """Compile ``source`` into ``out_dir`` (once per source version); returns the program.

    Static linking is tried first: it saves the dynamic loader's ~0.1 ms on every task start."""
    with open(source, "rb") as f:
        digest = hashlib.sha1(f.read()).hexdigest()[:12]
    exe = os.path.join(out_dir, f"{WRAPPER_NAME}-{digest}")
    if os.access(exe, os.X_OK):
        return exe
    cc = compiler()
    if cc is None:
        raise WrapperError("--enable-rt-stats: no C compiler (cc) to build the wrapper from "
                           f"{source}; install one or give --wrapper-rt-stats PATH")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError:
        out_dir = tempfile.gettempdir()
        exe = os.path.join(out_dir, f"{WRAPPER_NAME}-{os.getuid()}-{digest}")
    tmp = f"{exe}.{os.getpid()}.tmp"
    errors = ""
    for extra in (["-static"], []):
        proc = subprocess.run([*cc.split(), "-std=c99", "-O2", "-Wall", "-Wextra", *extra, "-o", tmp, source],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            os.replace(tmp, exe)
            return exe
        errors = proc.stderr.strip()
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    raise WrapperError(f"--enable-rt-stats: could not build the wrapper from {source}: {errors[-500:]}")


def cpu_list(cpus: Tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


class RtStats:
    """Collects wrapper records through one pipe and writes the launcher's own per-task lines."""

    def __init__(self, wrapper: str, out_dir: str, tag: str) -> None:
        self.wrapper = wrapper
        make_dir(out_dir)
        self.records_path = os.path.join(out_dir, f"wrapper-{tag}.jsonl")
        self.launch_path = os.path.join(out_dir, f"launch-{tag}.jsonl")
        r, w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(r, False)
        # a high descriptor number, so that dup2(write_fd, 3) in a child never aliases it
        self.write_fd = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(w)
        if _F_SETPIPE_SZ is not None:
            with contextlib.suppress(OSError):  # room for ~4000 records between two drains
                fcntl.fcntl(r, _F_SETPIPE_SZ, 1 << 20)
        self._r = r
        self._out = os.open(self.records_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        os.fchmod(self._out, 0o600)
        self._launch = open_private(self.launch_path, "a", encoding="utf-8", buffering=1 << 16)
        self._partial = b""
        self._signals: Dict[str, int] = {}
        self._errors: Dict[str, str] = {}
        self._running: Dict[str, Tuple[str, str, Optional[str], int, int, float, float]] = {}
        self.records = 0
        self._flushed = 0.0

    def fileno(self) -> int:
        return self._r

    def argv(self, req: LaunchRequest, exe: Optional[str], fd: int) -> List[str]:
        """The wrapper's command line for ``req`` (record to ``fd``; ``exe``: resolved program)."""
        out = [self.wrapper, "-r", str(fd), "-t", req.task_id]
        if req.cpus:
            out += ["-c", cpu_list(req.cpus)]
        if exe is not None:
            out += ["-e", exe]
        out.append("--")
        out.extend(req.argv)
        return out

    def started(self, req: LaunchRequest, pid: int, spawn_rt: float, spawn_mono: float) -> None:
        env = req.env or {}
        nodes = env.get("HPILOT_NODELIST") or (req.node or "")
        per_node = env.get("HPILOT_TASKS_PER_NODE", "")
        ncores = int(env.get("HPILOT_NPROCS") or (len(req.cpus) if req.cpus else 1))
        cpus = cpu_list(req.cpus) if req.cpus else None
        self._running[req.task_id] = (nodes, per_node, cpus, ncores, pid, spawn_rt, spawn_mono)

    def ended(self, task_id: str, exit_code: int, reason: Optional[str], end_rt: float, end_mono: float) -> None:
        info = self._running.pop(task_id, None)
        if info is None:
            return
        nodes, per_node, cpus, ncores, pid, spawn_rt, spawn_mono = info
        self._launch.write(json.dumps({
            "v": FORMAT_VERSION, "task": task_id, "nodes": nodes, "per_node": per_node, "cpus": cpus,
            "ncores": ncores, "pid": pid, "spawn": spawn_rt, "spawn_mono": spawn_mono, "end": end_rt,
            "end_mono": end_mono, "exit": exit_code, "reason": reason}) + "\n")
        if end_mono - self._flushed > 1.0:  # a run killed mid-way keeps all but the last second
            self._flushed = end_mono
            self._launch.flush()

    def drain(self) -> int:
        """Copy every record waiting in the pipe to the records file; returns how many."""
        chunks = []
        while True:
            try:
                data = os.read(self._r, 1 << 16)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        if not chunks:
            return 0
        data = self._partial + b"".join(chunks)
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        whole = data[:end]
        if whole:
            os.write(self._out, whole)
            n = whole.count(b"\n")
            self.records += n
            # Only a killed task or a failed exec needs its record parsed here.
            if whole.count(b'"signal":0,') != n or whole.count(b'"error":""}') != n:
                self._scan(whole)
            return n
        return 0

    def _scan(self, lines: bytes) -> None:
        for line in lines.splitlines():
            if b'"signal":0,' in line and b'"error":""}' in line:
                continue
            rec = wrapper_record(line)
            if rec is None:
                continue
            task, sig, error = rec
            if sig:
                self._signals[task] = sig
            if error:
                self._errors[task] = error

    def signal_of(self, task_id: str) -> Optional[int]:
        """The signal that killed the task, when its wrapper said so (it exits 128+N)."""
        return self._signals.pop(task_id, None)

    def error_of(self, task_id: str) -> Optional[str]:
        """Why the wrapper could not start the task (exec failed), if it could not."""
        return self._errors.pop(task_id, None)

    def flush(self) -> None:
        self._launch.flush()

    def close(self) -> None:
        self.drain()
        if self._partial:  # a wrapper killed in the middle of a write cannot happen (one write); keep it anyway
            os.write(self._out, self._partial + b"\n")
        for fd in (self._r, self.write_fd, self._out):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._launch.close()


def wrapper_record(line: bytes) -> Optional[Tuple[str, int, str]]:
    """(task, signal, error) of one wrapper record, or None when the line is not one.

    The pipe is the wrapper's, but a task could write to it too: any line is taken
    apart within limits, and a wrong one is skipped (it stays in the records file)."""
    try:
        rec = safejson.loads(line, RECORD_LIMITS)
    except safejson.DecodeError:
        return None
    if not isinstance(rec, dict):
        return None
    task, sig, error = rec.get("task", ""), rec.get("signal", 0), rec.get("error", "")
    if not isinstance(task, str) or type(sig) is not int or not 0 <= sig < 256 or not isinstance(error, str):
        return None
    return task, sig, error


def default_tag() -> str:
    """Names one launcher's files: host and pid, unique among the agents of a run."""
    import socket

    return f"{socket.gethostname().split('.')[0] or 'host'}-{os.getpid()}"


def open_stats(run_path: str, enable_rt: bool, wrapper: Optional[str], enable_proc: bool, interval: float,
               tag: Optional[str] = None) -> Tuple[Optional[RtStats], Optional[ProcSampler]]:
    """The statistics a launcher writes into the run directory ``run_path`` (what the
    flags ask for); raises :class:`WrapperError` when rt-stats are wanted without a wrapper."""
    tag = tag or default_tag()
    rt = RtStats(find_wrapper(wrapper), os.path.join(run_path, "rtstats"), tag) if enable_rt else None
    ps = ProcSampler(os.path.join(run_path, "procstats"), tag, interval) if enable_proc else None
    return rt, ps
