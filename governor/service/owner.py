"""Who runs a run directory, and what a resume does about the one before it.

A running service claims its run directory: ``<run dir>/owner`` says which process on which
host (and in which Slurm job) runs it, and every process of the run carries the run in its
environment (``HPILOT_RUN=<run>``: partition managers, node agents and tasks inherit it).  A
clean end removes the file, so a resume that finds one knows the previous manager died
(``kill -9``, a node crash, Slurm's SIGKILL) or is still running.  Before it starts anything,
a resume

1. refuses while the previous manager is alive: on this host, its pid with the same start
   time; on another, its Slurm job still running (a job still ending is waited for);
2. kills whatever that run left on this host (every process carrying its ``HPILOT_RUN``),
   and, when the dead manager ran in this same allocation, on the allocation's other nodes
   too (one ``srun`` step running the guard's sweep on each).  Elsewhere (an allocation that
   has ended) Slurm has ended the job's processes, and each launcher's guard its tasks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from hpilot.governor.errors import UserError
from hpilot.launcher import guard
from hpilot.launcher.private import write_private

log = logging.getLogger("hpilot.service")
OWNER = "owner"
RUN_ENV = "HPILOT_RUN"
ACTIVE_JOB_STATES = ("PENDING", "RUNNING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _started(pid: int) -> Optional[float]:
    """When ``pid`` started (None: no such process)."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def claim(run_path: str, run_name: str) -> None:
    """This process runs ``run_path`` now; its children carry the run in their environment."""
    me = os.getpid()
    write_private(os.path.join(run_path, OWNER), json.dumps({
        "host": socket.gethostname(), "pid": me, "started": _started(me), "boot": _boot_id(),
        "slurm_job": os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID"),
        "nodes": os.environ.get("SLURM_JOB_NODELIST"),
    }) + "\n")
    os.environ[RUN_ENV] = run_name


def release(run_path: str) -> None:
    """A clean end: nothing of this run is left running."""
    prev = read(run_path)
    if prev is not None and prev.get("pid") == os.getpid() and prev.get("host") == socket.gethostname():
        with contextlib.suppress(OSError):
            os.remove(os.path.join(run_path, OWNER))


def read(run_path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(run_path, OWNER)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def take_over(run_path: str, wait_for_job: float = 60.0) -> List[str]:
    """Before a resume starts anything: refuse (UserError) while the previous manager of the
    run is alive; else kill what it left where this process can reach.  What was done, said."""
    prev = read(run_path)
    if prev is None:
        return []  # it ended cleanly (or is older than the owner file)
    who = f"pid {prev.get('pid')} on {prev.get('host')}"
    same_host = prev.get("host") == socket.gethostname() and prev.get("boot") == _boot_id()
    if same_host:
        pid = prev.get("pid")
        started = _started(pid) if isinstance(pid, int) else None
        if started is not None and (prev.get("started") is None or abs(started - prev["started"]) < 1.0):
            raise UserError(f"the previous manager of this run is still running ({who}); stop it first "
                            f"(kill {pid}), or wait for it to end, then resume")
    else:
        job = prev.get("slurm_job")
        state = _job_state(job, wait_for_job) if job else None
        if state in ACTIVE_JOB_STATES:
            raise UserError(f"the previous manager of this run ({who}) runs in Slurm job {job}, which is {state}; "
                            f"stop it first (scancel {job}), or wait for it to end, then resume")
        if not job:
            log.warning("the previous manager of this run (%s) did not end cleanly and cannot be checked from "
                        "here: if it still runs, stop it", who)
    said = []
    marker = f"{RUN_ENV}={os.path.basename(os.path.abspath(run_path))}".encode()
    killed = guard.sweep(marker, _ancestors())
    if killed:
        said.append(f"killed {killed} process(es) the previous run left on {socket.gethostname()}")
    here = os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID")
    if here and prev.get("slurm_job") == here:  # the dead manager ran in this allocation: its other nodes too
        remote = _sweep_allocation(marker)
        if remote:
            said.append(f"killed {remote} process(es) the previous run left on the allocation's other nodes")
    return said


def _ancestors() -> List[int]:
    """This process and its ancestors: a resume started from inside the run's own environment
    (a task of it, say) must not kill itself."""
    out, pid = [], os.getpid()
    while pid > 1:
        out.append(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _job_state(job: str, wait: float) -> Optional[str]:
    """The Slurm job's state (None: gone or unknown); a job still COMPLETING is waited for."""
    if shutil.which("squeue") is None:
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            out = subprocess.run(["squeue", "-h", "-j", str(job), "-o", "%T"], capture_output=True, text=True,
                                 timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        state = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
        if state not in ("COMPLETING", "CONFIGURING") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def _sweep_allocation(marker: bytes) -> int:
    """The guard's sweep on every node of this allocation (one overlapping srun step)."""
    nodes = os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES")
    if not nodes or shutil.which("srun") is None:
        return 0
    argv = ["srun", "--overlap", "-N", nodes, "--ntasks-per-node=1", "--ntasks", nodes, "--cpu-bind=none",
            "--job-name=hpilot-sweep", sys.executable, "-I", "-S", guard.__file__, "--sweep", marker.decode()]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("could not look for the previous run's processes on the other nodes: %s", e)
        return 0
    return sum(int(w) for w in out.stdout.split() if w.isdigit())
