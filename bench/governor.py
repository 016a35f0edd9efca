"""Governor-mode control plane: routing throughput, a million iterations, a 10,000-job DAG.

Tasks are dry runs (``--dry-run-tasks 0``: no processes; each task "succeeds" as soon as
its partition manager starts it), so what is measured is the governor, the routing by
credit, the wire and the partition managers.  The partitions are local processes
(``--partition-nodes``) over 8 nodes of 8 virtual cores; every rate is from the wall time
of the whole ``hpilot run`` (start-up and partition registration included), and the G-N
rows also give the start-up and the steady rate apart, read from the governor's log.
Each figure has its flat baseline beside it (G-flat, G-1M-flat, G-DAG-flat): the same
requests through one manager that runs every node in its own process, the list scheduler
the hierarchy is measured against.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import statistics
from typing import Any, Dict, List, NamedTuple, Optional

NODES = "8,8,8,8,8,8,8,8"
THROUGHPUT_ITERS = 100_000
BIG_ITERS = 1_000_000
DAG_JOBS = 10_000
REAL_TASKS = 2_000
REAL_SECONDS = 0.2  # real processes: a partition is idle between its tasks' ends (the governor's cost is per frame)
# The G rows' ratio (more partitions never costs the governor more per task) is within a few
# per cent on this shared machine only as a median of several runs: at least this many each.
G_ROUNDS = 5
QUICK = {"throughput": 10_000, "big": 100_000, "dag": 1_000, "real": 200}  # --quick: a tenth of each


def _requests(jobs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{"request": "submit", "jobs": jobs}, {"request": "control", "command": "finishAfterAllTasksDone"}]


def _sweep(n: int) -> List[Dict[str, Any]]:
    return _requests([{"name": "sweep", "iteration": {"stop": n}, "execution": {"exec": "/bin/true"}}])


def _sleeps(n: int, seconds: float) -> List[Dict[str, Any]]:
    return _requests([{"name": "sleeps", "iteration": {"stop": n},
                       "execution": {"exec": "/bin/sleep", "args": [f"{seconds:g}"]}}])


def _dag(n: int) -> List[Dict[str, Any]]:
    """Chains of 5 and diamonds (a -> b, c -> d), alternating, n jobs in all."""
    jobs: List[Dict[str, Any]] = []
    i = 0
    while len(jobs) < n:
        base = f"g{i}"
        if i % 2 == 0:
            for k in range(5):
                job: Dict[str, Any] = {"name": f"{base}c{k}", "execution": {"exec": "/bin/true"}}
                if k:
                    job["dependencies"] = {"after": [f"{base}c{k - 1}"]}
                jobs.append(job)
        else:
            jobs.append({"name": f"{base}a", "execution": {"exec": "/bin/true"}})
            for s in ("b", "c"):
                jobs.append({"name": f"{base}{s}", "execution": {"exec": "/bin/true"},
                             "dependencies": {"after": [f"{base}a"]}})
            jobs.append({"name": f"{base}d", "execution": {"exec": "/bin/true"},
                         "dependencies": {"after": [f"{base}b", f"{base}c"]}})
        i += 1
    return _requests(jobs)  # whole chains and diamonds: n, or a few more


def _run(workdir: str, name: str, requests: List[Dict[str, Any]], parts: int, repeat: int,
         dry: bool = True) -> Dict[str, float]:
    return _summary(_runs(workdir, name, requests, parts, repeat, dry))


class _One(NamedTuple):
    """One run of a row: what :func:`bench.__main__.timed` measured, the log's phases, the governor's CPU."""

    wall: float
    peak_mb: float
    exit_code: int
    phases: Dict[str, float]
    gov_cpu_s: Optional[float]


def _runs(workdir: str, name: str, requests: List[Dict[str, Any]], parts: int, repeat: int,
          dry: bool = True) -> List[_One]:
    from bench.__main__ import timed  # the same timing and peak-memory probe as the other rows

    wd = os.path.join(workdir, name)
    os.makedirs(wd, exist_ok=True)
    req = os.path.join(wd, "requests.json")
    with open(req, "w") as f:
        json.dump(requests, f)
    # parts 0: the flat baseline, one manager with every node in its own process (no partition managers)
    cmd = [__import__("sys").executable, "-m", "hpilot.governor", "run", req, "--nodes", NODES] + \
        (["--partition-nodes", str(8 // parts)] if parts else []) + \
        (["--dry-run-tasks", "0"] if dry else []) + ["--log", "info", "--no-journal"]
    out: List[_One] = []
    for _ in range(repeat):
        out.append(_One(*timed(cmd, wd), _phases(os.path.join(wd, ".hpilot", "latest", "service.log")),
                        _governor_cpu(os.path.join(wd, ".hpilot", "latest", "final_status"))))
    return out


def _summary(runs: List[_One]) -> Dict[str, float]:
    """Medians over the runs of one row (peak memory: the largest; ok: every run succeeded)."""
    out = {"wall": statistics.median(r.wall for r in runs), "peak": max(r.peak_mb for r in runs),
           "ok": float(all(r.exit_code == 0 for r in runs))}
    cpus = [r.gov_cpu_s for r in runs]
    if all(c is not None for c in cpus):
        out["gov_cpu_s"] = statistics.median(c for c in cpus if c is not None)
    for key in ("register_s", "work_s", "steady_cpu_s", "steady_done_before"):
        got = [r.phases[key] for r in runs if r.phases.get(key) is not None]
        if got:
            out[key] = statistics.median(got)
    return out


def _governor_cpu(final_status: str) -> Optional[float]:
    """The governor process's own CPU seconds (its final_status): what it spends, whatever the
    partition managers on the same 2 CPUs take from its wall time."""
    try:
        with open(final_status) as f:
            cpu = json.load(f).get("cpu_s")
    except (OSError, ValueError):
        return None
    return float(cpu) if isinstance(cpu, (int, float)) else None


def _phases(log_path: str) -> Dict[str, float]:
    """From the governor's service.log: the first partition manager's start to the last
    registration (``register_s``), the first registration to "finishing" (``work_s``), and the
    steady phase, from "every partition registered" to "finishing": the governor's CPU then
    (``steady_cpu_s``) and the iterations finished before it (``steady_done_before``).  Start-up
    (each partition manager's start and registration) grows with the number of partitions;
    the steady phase is what each iteration costs with all of them at work."""
    def stamp(line: str) -> float:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()

    started, registered, finishing = [], [], []
    cpu: List[float] = []  # the governor's CPU when every partition had registered, and at finishing
    done_then: Optional[int] = None
    try:
        with open(log_path) as f:
            for line in f:
                if "partition manager" in line and " started (pid" in line:
                    started.append(stamp(line))
                elif "registered from" in line:
                    registered.append(stamp(line))
                elif "every partition registered:" in line:
                    m = re.search(r"registered: (\d+) iteration", line)
                    done_then = int(m.group(1)) if m else None
                    cpu = _cpu_of(line)
                elif "finishing: all jobs finished" in line:
                    finishing.append(stamp(line))
                    cpu += _cpu_of(line)
    except (OSError, ValueError):
        return {}
    if not (started and registered and finishing):
        return {}
    out = {"register_s": max(registered) - min(started), "work_s": finishing[0] - min(registered)}
    if len(cpu) == 2 and done_then is not None:
        out["steady_cpu_s"] = cpu[1] - cpu[0]
        out["steady_done_before"] = float(done_then)
    return out


def _cpu_of(line: str) -> List[float]:
    """``... (governor cpu 0.123 s)`` / ``... (cpu 1.234 s)`` at the end of a service.log line."""
    m = re.search(r"cpu ([0-9.]+) s\)\s*$", line)
    return [float(m.group(1))] if m else []


def _row(name: str, description: str, tasks: int, r: Dict[str, float], target: str = "-",
         met: Optional[bool] = None, cpu: bool = True) -> Dict[str, Any]:
    """One row of the main table from a :func:`_run` (``met`` None: it ran and every run succeeded)."""
    row: Dict[str, Any] = {"makespan_s": None, "exit_codes": [0], "runs": [], "workload": name,
                           "description": description, "tasks": tasks, "wall_s": round(r["wall"], 4),
                           "tasks_per_s": round(tasks / r["wall"], 1), "peak_mb": r["peak"], "target": target,
                           "met": bool(r["ok"]) if met is None else met and bool(r["ok"])}
    if cpu:
        row["gov_cpu_us_per_task"] = round(1e6 * r["gov_cpu_s"] / tasks, 2) if "gov_cpu_s" in r else None
    return row


def run(repeat: int, workdir: str, file_w1_wall: float, quick: bool = False) -> List[Dict[str, Any]]:
    """G-1..G-8, G-1M and G-DAG rows, each with its flat baseline (one manager, every node in its
    own process: what the hierarchy is measured against), and G-REAL-1/8 (real processes, where a
    partition's reports are paced by its report period, not by its tasks' ends); ``quick`` runs a
    tenth of each size."""
    n = QUICK["throughput"] if quick else THROUGHPUT_ITERS
    big = QUICK["big"] if quick else BIG_ITERS
    dag = QUICK["dag"] if quick else DAG_JOBS
    rows: List[Dict[str, Any]] = []
    rates: Dict[int, float] = {}
    # the G rows are compared with one another (more partitions never slower): their runs
    # alternate, 1, 2, 4, 8, 1, 2, ..., so that a slow minute of a shared machine falls on all
    runs: Dict[int, List[_One]] = {parts: [] for parts in (1, 2, 4, 8)}
    for _ in range(max(repeat, 1 if quick else G_ROUNDS)):
        for parts in runs:
            runs[parts] += _runs(workdir, f"G{parts}", _sweep(n), parts, 1)
    for parts in (1, 2, 4, 8):
        r = _summary(runs[parts])
        rate = rates[parts] = n / r["wall"]
        target, met = "-", None
        if parts == 4:
            target, met = ">= 10,000 iterations/s", rate >= 10_000
        elif parts == 8:
            target, met = f">= the 4-partition rate ({rates[4]:.0f}/s)", rate >= rates[4]
        rows.append({**_row(f"G-{parts}", f"{n:,} dry-run iterations, {parts} partition(s)", n, r, target, met),
                     "register_s": round(r["register_s"], 3) if "register_s" in r else None,
                     "steady_per_s": round(n / r["work_s"], 1) if r.get("work_s") else None,
                     "gov_steady_cpu_us_per_task": _steady(r, n)})
    rows.append(_row("G-flat", f"{n:,} dry-run iterations, one manager (the flat baseline: no partition managers)",
                     n, _run(workdir, "G-flat", _sweep(n), 0, repeat)))
    r = _run(workdir, "G-1M", _sweep(big), 8, 1)
    rows.append(_row("G-1M", f"{big:,} dry-run iterations over 8 partitions", big, r,
                     "governor peak memory < 100 MB", r["peak"] < 100))
    rows.append(_row("G-1M-flat", f"{big:,} dry-run iterations, one manager (the flat baseline)", big,
                     _run(workdir, "G-1M-flat", _sweep(big), 0, 1)))
    r = _run(workdir, "G-DAG", _dag(dag), 4, repeat)
    rows.append(_row("G-DAG", f"{dag:,}-job DAG (chains, diamonds), dry run, 4 partitions", dag, r, "< 5 s",
                     r["wall"] < 5.0, cpu=False))
    rows.append(_row("G-DAG-flat", f"{dag:,}-job DAG (chains, diamonds), dry run, one manager (the flat baseline)",
                     dag, _run(workdir, "G-DAG-flat", _dag(dag), 0, repeat), cpu=False))
    real = QUICK["real"] if quick else REAL_TASKS
    for parts in (1, 8):
        r = _run(workdir, f"G-REAL-{parts}", _sleeps(real, REAL_SECONDS), parts, repeat, dry=False)
        rows.append({**_row(f"G-REAL-{parts}", f"{real:,} tasks of `sleep {REAL_SECONDS:g}` (real processes), "
                            f"{parts} partition(s)", real, r),
                     "gov_steady_cpu_us_per_task": _steady(r, real)})
    return rows


def _steady(r: Dict[str, float], n: int) -> Optional[float]:
    """The governor's CPU per iteration finished in the steady phase (see :func:`_phases`)."""
    if "steady_cpu_s" not in r or n <= r.get("steady_done_before", n):
        return None
    return round(1e6 * r["steady_cpu_s"] / (n - r["steady_done_before"]), 2)
