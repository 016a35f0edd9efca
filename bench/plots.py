"""Plots of a big run (issue #15): ``hpilot report RUN gantt|cores|throughput OUT.png`` of
100,000 tasks on 1,000 nodes, each in under 5 s.

The run is real, made here: ``hpilot run`` in governor mode over 1,000 virtual nodes of 4
cores in 4 partition managers, with dry-run tasks (``--dry-run-tasks 1``: every task
"runs" one second, no process), so the journal the plots read is the one a real run
writes.  Each plot's time is the whole command (Python start-up, imports, reading the
journal, drawing, writing the PNG), median of the repeats; the CPU time (user + system)
is given too, since on a loaded machine the wall time also counts waiting for a CPU.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

from bench.__main__ import measured_env

TASKS, NODES, CORES, PARTITION_NODES = 100_000, 1000, 4, 250
QUICK = (10_000, 100, 4, 25)  # --quick: a tenth
KINDS = ("gantt", "cores", "throughput")


def jobs(total: int) -> List[Dict[str, Any]]:
    """Four jobs in a small DAG, of 1, 2 and 4 cores, ``total`` iterations in all."""
    sizes = [total * 4 // 100, total * 60 // 100, total * 20 // 100]
    sizes.append(total - sum(sizes))
    return [{"request": "submit", "jobs": [
        {"name": "prepare", "iteration": {"stop": sizes[0]}, "execution": {"exec": "/bin/true"}},
        {"name": "simulate", "iteration": {"stop": sizes[1]}, "execution": {"exec": "/bin/true"},
         "dependencies": {"after": ["prepare"]}},
        {"name": "analyse", "iteration": {"stop": sizes[2]}, "execution": {"exec": "/bin/true"},
         "resources": {"numCores": {"exact": 2}}, "dependencies": {"after": ["prepare"]}},
        {"name": "reduce", "iteration": {"stop": sizes[3]}, "execution": {"exec": "/bin/true"},
         "resources": {"numCores": {"exact": 4}}, "dependencies": {"after": ["analyse"]}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}]


def dry_run(wd: str, tasks: int, nodes: int, cores: int, partition_nodes: int) -> Tuple[str, float]:
    """A real governor-mode dry run; returns its run dir and how long it took."""
    os.makedirs(wd, exist_ok=True)
    with open(os.path.join(wd, "jobs.json"), "w") as f:
        json.dump(jobs(tasks), f)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpilot.governor", "run", "jobs.json", "--nodes",
                    ",".join([str(cores)] * nodes), "--partition-nodes", str(partition_nodes), "--dry-run-tasks", "1",
                    "--log", "warning"], cwd=wd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return os.path.realpath(os.path.join(wd, ".hpilot", "latest")), time.perf_counter() - t0


def _plot(run: str, kind: str, out: str) -> Tuple[float, float, int]:
    """Wall and CPU seconds of one ``hpilot report`` command, and its exit status."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "hpilot.governor", "report", run, kind, out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=measured_env())
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def run(repeat: int, workdir: str, file_w1_wall: float, quick: bool = False) -> List[Dict[str, Any]]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError("matplotlib is not installed (pip install 'hpilot[report]')") from None
    tasks, nodes, cores, pn = QUICK if quick else (TASKS, NODES, CORES, PARTITION_NODES)
    run_dir, made_in = dry_run(os.path.join(workdir, "P-run"), tasks, nodes, cores, pn)
    rows = []
    for kind in KINDS:
        walls, cpus, codes = [], [], []
        for i in range(repeat):
            wall, cpu, code = _plot(run_dir, kind, os.path.join(workdir, f"P-{kind}-{i}.png"))
            walls.append(wall)
            cpus.append(cpu)
            codes.append(code)
        wall = statistics.median(walls)
        rows.append({"workload": f"P-{kind}", "tasks": tasks, "wall_s": round(wall, 4), "tasks_per_s": None,
                     "description": f"hpilot report RUN {kind} OUT.png, {tasks:,} tasks on {nodes:,} nodes",
                     "peak_mb": 0.0, "makespan_s": None, "exit_codes": codes, "runs": [round(w, 4) for w in walls],
                     "cpu_s": round(statistics.median(cpus), 4), "run_made_s": round(made_in, 1),
                     "target": "< 5 s", "met": wall < 5.0 and all(c == 0 for c in codes)})
    return rows
