"""``python -m bench agents``: node agents on the local Slurm cluster vs. local mode.

The same 2000 ``/bin/true`` run twice on this machine: in local mode (``--resources
local``, this machine's CPUs) and inside ``salloc -N 4 --ntasks-per-node=2`` through one
agent per node.  Throughput is 2000 / the service's own elapsed time (``final_status``:
from the service's start to its end, agent start-up included), so salloc's own overhead
does not count against either.  Agent start is what the service logs ("N of N ready in
X s").  Targets: agents >= 60% of local throughput; 4 agents start in < 2 s.
Needs the cluster of ``tests/slurm/start.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional

from bench.__main__ import measured_env

TASKS = 2000
HPILOT = [sys.executable, "-m", "hpilot.governor"]


def _requests(path: str) -> None:
    with open(path, "w") as f:
        json.dump([{"request": "submit", "jobs": [{"name": "t", "iteration": {"stop": TASKS},
                                                   "execution": {"exec": "/bin/true"}}]},
                   {"request": "control", "command": "finishAfterAllTasksDone"}], f)


def slurm_reason(nodes: int = 4) -> Optional[str]:
    """Why the Slurm suites cannot run here, or None: salloc, an answering controller, ``nodes`` idle nodes."""
    if shutil.which("salloc") is None:
        return "no Slurm client (salloc) here"
    try:  # -t idle: only the idle nodes, counted per partition line
        out = subprocess.run(["sinfo", "-h", "-t", "idle", "-o", "%D"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return f"sinfo failed: {e}"
    if out.returncode != 0:
        return "no Slurm controller answers"
    idle = sum(int(n) for n in out.stdout.split() if n.isdigit())
    return None if idle >= nodes else f"the Slurm partition has {idle} idle node(s), {nodes} are needed"


def run_once(prefix: List[str], wd: str, req: str, extra: List[str]) -> Dict[str, Optional[float]]:
    """One ``hpilot run``: the service's own elapsed time, agent start, iterations that succeeded."""
    proc = subprocess.run([*prefix, *HPILOT, "run", req, "--wd", wd, "--log", "info", *extra],
                          capture_output=True, text=True, timeout=300, env=measured_env())
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    run = os.path.realpath(os.path.join(wd, ".hpilot", "latest"))
    with open(os.path.join(run, "final_status")) as f:
        status = json.load(f)
    with open(os.path.join(run, "service.log")) as f:
        m = re.search(r"node launcher agents: \d+ of \d+ ready in ([0-9.]+)s", f.read())
    return {"elapsed": float(status["elapsed_s"]), "agent_start": float(m.group(1)) if m else None,
            "succeeded": float(status.get("iterations", {}).get("succeeded", 0))}


SALLOC = ["salloc", "-Q", "-N", "4", "--ntasks-per-node=2"]


def requests_file(tmp: str) -> str:
    req = os.path.join(tmp, "r.json")
    _requests(req)
    return req


def measure(repeat: int) -> Dict[str, Any]:
    """Local mode vs 4 agents, ``repeat`` runs each: medians of the service's elapsed time."""
    with tempfile.TemporaryDirectory(prefix="hpilot-bench-agents-") as tmp:
        req = requests_file(tmp)
        local = [run_once([], os.path.join(tmp, "local"), req, ["--resources", "local"]) for _ in range(repeat)]
        agents = [run_once(SALLOC, os.path.join(tmp, "agents"), req, []) for _ in range(repeat)]
    t_local = statistics.median(r["elapsed"] or 0.0 for r in local)
    t_agents = statistics.median(r["elapsed"] or 0.0 for r in agents)
    start = statistics.median(r["agent_start"] or 0.0 for r in agents)
    return {"tasks": TASKS, "cpus": os.cpu_count(), "local_s": round(t_local, 3),
            "local_tasks_per_s": round(TASKS / t_local), "agents_s": round(t_agents, 3),
            "agents_tasks_per_s": round(TASKS / t_agents), "ratio": round(t_local / t_agents, 3),
            "agent_start_s": round(start, 3),
            "runs_local": [r["elapsed"] for r in local], "runs_agents": [r["elapsed"] for r in agents]}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench agents", description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    why = slurm_reason()
    if why:
        print(f"bench agents: {why}; start one with `bash tests/slurm/start.sh`", file=sys.stderr)
        return 2
    rows = measure(args.repeat)
    ratio, start = rows["ratio"], rows["agent_start_s"]
    ok = ratio >= 0.6 and start < 2.0
    print(f"| mode | elapsed s | tasks/s |\n|---|---|---|\n"
          f"| local ({os.cpu_count()} CPUs) | {rows['local_s']:.3f} | {rows['local_tasks_per_s']} |\n"
          f"| 4 agents (salloc -N 4 --ntasks-per-node=2) | {rows['agents_s']:.3f} | {rows['agents_tasks_per_s']} |\n\n"
          f"agents / local throughput: {ratio:.2f} (target >= 0.60); agent start for 4 nodes: {start:.2f} s "
          f"(target < 2 s): {'met' if ok else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
