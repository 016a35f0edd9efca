"""Process statistics (``--enable-proc-stats``): samples the process trees of running tasks.

Unlike QCG-PilotJob, which walks everything under ``slurmstepd``, the launcher knows
the leader of each task (the wrapper, or the task itself), so it samples exactly the
trees of the tasks it runs -- in local mode too -- and tags every process with its
task id.  Samples are JSON lines in ``<run>/procstats/procs-<tag>.jsonl``: the
static facts of a process (parent, name, command line, creation time, CPU affinity)
the first time it is seen (and again after an exec), then only what changes (CPU times, memory).  Sampling runs
in the launcher's own loop when its deadline is due (no thread), so a node agent can
call :meth:`ProcSampler.sample` from its loop the same way.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import IO, Any, Dict, Iterable, List, Optional, Tuple

import psutil
from hpilot.launcher.private import make_dir, open_private

FORMAT_VERSION = 1


class ProcSampler:
    def __init__(self, out_dir: str, tag: str, interval: float, host: Optional[str] = None) -> None:
        make_dir(out_dir)
        self.path = os.path.join(out_dir, f"procs-{tag}.jsonl")
        self.interval = max(0.01, interval)
        self.host = host or socket.gethostname().split(".")[0]
        self._f: IO[str] = open_private(self.path, "a", encoding="utf-8", buffering=1 << 16)
        self._seen: Dict[Tuple[int, float], str] = {}
        self._procs: Dict[int, psutil.Process] = {}  # psutil caches per-process state (cpu_times ...)
        self._next = 0.0
        self.samples = 0

    def due(self, now: float) -> float:
        """When the next sample is due (``now`` is time.time())."""
        if self._next == 0.0:
            self._next = now + self.interval
        return self._next

    def sample(self, leaders: Iterable[Tuple[str, int]], now: Optional[float] = None) -> int:
        """Record every process of each ``(task_id, leader pid)``; returns how many processes."""
        now = time.time() if now is None else now
        self._next = now + self.interval
        n = 0
        alive = set()
        for task_id, pid in leaders:
            for proc in self._tree(pid):
                line = self._describe(task_id, proc, now)
                if line is not None:
                    self._f.write(line)
                    alive.add(proc.pid)
                    n += 1
        for pid in [p for p in self._procs if p not in alive]:
            del self._procs[pid]
        self.samples += 1
        self._f.flush()
        return n

    def _tree(self, pid: int) -> List[psutil.Process]:
        try:
            leader = self._procs.get(pid) or psutil.Process(pid)
            self._procs[pid] = leader
            return [leader, *leader.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return []

    def _describe(self, task_id: str, proc: psutil.Process, now: float) -> Optional[str]:
        proc = self._procs.setdefault(proc.pid, proc)
        rec: Dict[str, Any] = {"t": round(now, 6), "task": task_id, "host": self.host, "pid": proc.pid}
        try:
            with proc.oneshot():
                created = proc.create_time()
                key = (proc.pid, created)
                name = proc.name()
                # A forked child that has not exec'd yet carries its parent's name; after exec the same
                # (pid, created) is a new program, so the static facts are written again.
                if self._seen.get(key) != name:
                    self._seen[key] = name
                    rec.update(v=FORMAT_VERSION, ppid=proc.ppid(), name=name, cmdline=proc.cmdline(),
                               created=created)
                    try:
                        rec["cpus"] = proc.cpu_affinity()
                    except (AttributeError, psutil.Error):
                        rec["cpus"] = None
                    parent = proc.parent()
                    rec["parent_name"] = parent.name() if parent is not None else None
                ct = proc.cpu_times()
                rec["cpu_times"] = [ct.user, ct.system, ct.children_user, ct.children_system]
                rec["memory"] = proc.memory_info()._asdict()
                rec["mem_percent"] = round(proc.memory_percent(), 6)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        return json.dumps(rec) + "\n"

    def close(self) -> None:
        self._f.close()
