"""Scale without a large machine: the real governor and partition cores on a virtual clock.

``python -m bench.scale`` builds allocations of 16 to 1,024 virtual nodes of 128 cores,
split into partitions of 16 nodes. It runs one job of ``8 x cores`` iterations through
GovernorCore (with its Router, as in ``--governor``) and one PartitionCore per partition,
the same code that runs in the processes. No sockets and no processes: a task "runs" for
its simulated duration on a virtual clock, and the cores handle every event as they
would for real tasks.

Durations are lognormal (median 60 s, sigma 0.8): most tasks are alike, with a tail of
long ones. This is the common shape of parameter sweeps, and the tail tests
backfilling.

Measured per size:
- governor CPU per task: real seconds spent inside ``GovernorCore.handle``;
- partition CPU per task: real seconds inside the partition cores;
- messages per task between the governor and the partitions;
- the simulation's peak RSS (governor + all partition cores in this one process);
- the utilisation reached: the task core-seconds over cores x makespan, and the
  makespan over the ideal (work / cores, or the longest task).
"""

from __future__ import annotations

import argparse
import cProfile
import heapq
import json
import os
import random
import resource
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from hpilot.governor.core.governor import ClientRequest, FromPart, GovernorConfig, GovernorCore, SendToPartition
from hpilot.governor.core.routing import PartitionJoined, Router
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.partition.core import PartitionConfig, PartitionCore, Schedule, TaskEnded, TaskStarted
from hpilot.partition.models import EnvContext
from hpilot.partition.resources import Node, ResourceSet

CORES_PER_NODE = 128
NODES_PER_PARTITION = 16


def simulate(nodes: int, tasks_per_core: int = 8, seed: int = 1,
             profilers: Optional[Dict[str, cProfile.Profile]] = None) -> Dict[str, Any]:
    """One size; ``profilers`` ("governor", "partition") profile only the cores' own handle calls."""
    prof_gov = (profilers or {}).get("governor")
    prof_part = (profilers or {}).get("partition")
    rng = random.Random(seed)
    gov = GovernorCore(GovernorConfig(root_wd="/tmp"), [])
    gov.router = Router()
    parts: Dict[str, PartitionCore] = {}
    cfg = PartitionConfig(root_wd="/tmp", env=EnvContext(base_env={}))
    gov_cpu = part_cpu = 0.0
    messages = 0
    clock = 0.0
    heap: List[Tuple[float, int, str, str]] = []
    seq = 0
    started: Dict[str, float] = {}
    busy = 0.0
    longest = 0.0

    def to_gov(ev: Any) -> None:
        nonlocal gov_cpu, messages
        if prof_gov is not None:
            prof_gov.enable()
        t0 = time.perf_counter()
        actions = gov.handle(ev)
        gov_cpu += time.perf_counter() - t0
        if prof_gov is not None:
            prof_gov.disable()
        for a in actions:
            if isinstance(a, SendToPartition):
                messages += 1
                to_part(a.partition, a.message)

    def to_part(name: str, ev: Any) -> None:
        nonlocal part_cpu, messages, seq, busy, longest
        core = parts[name]
        if prof_part is not None:
            prof_part.enable()
        t0 = time.perf_counter()
        actions = core.handle(ev) + core.handle(Schedule(clock))
        part_cpu += time.perf_counter() - t0
        if prof_part is not None:
            prof_part.disable()
        for a in actions:
            if isinstance(a, LaunchRequest):
                duration = min(rng.lognormvariate(4.094, 0.8), 3600.0)  # median e^4.094 = 60 s
                busy += duration
                longest = max(longest, duration)
                started[a.task_id] = clock
                seq += 1
                heapq.heappush(heap, (clock + duration, seq, name, a.task_id))
                to_part(name, TaskStarted(a.task_id, 0, clock))
            else:
                messages += 1
                to_gov(FromPart(name, a))

    for p in range(nodes // NODES_PER_PARTITION):
        names = [f"n{p * NODES_PER_PARTITION + i}" for i in range(NODES_PER_PARTITION)]
        rs = ResourceSet(tuple(Node(n, tuple(range(CORES_PER_NODE))) for n in names), False, "simulated")
        parts[f"p{p}"] = PartitionCore(rs, cfg)
        to_gov(PartitionJoined(f"p{p}", tuple((n, CORES_PER_NODE) for n in names), (), 0.0))
    cores = nodes * CORES_PER_NODE
    tasks = tasks_per_core * cores
    rss0 = _rss_mb()
    to_gov(ClientRequest({"request": "submit", "jobs": [
        {"name": "sweep", "iteration": {"stop": tasks}, "execution": {"exec": "/bin/true"}}]}, 0.0))
    wall0 = time.perf_counter()
    while heap:
        clock, _, name, task_id = heapq.heappop(heap)
        to_part(name, TaskEnded(TaskExit(task_id, 0, started.pop(task_id), clock)))
    wall = time.perf_counter() - wall0
    rec = gov.registry.get("sweep")
    assert rec is not None and rec.state.value == "SUCCEED", rec and rec.state
    ideal = max(busy / cores, longest)
    return {
        "nodes": nodes, "cores": cores, "partitions": len(parts), "tasks": tasks,
        "gov_us_per_task": round(1e6 * gov_cpu / tasks, 2), "part_us_per_task": round(1e6 * part_cpu / tasks, 2),
        "messages_per_task": round(messages / tasks, 3), "peak_rss_mb": round(_rss_mb(), 1),
        "rss_growth_mb": round(_rss_mb() - rss0, 1), "makespan_s": round(clock, 1),
        "ideal_makespan_s": round(ideal, 1), "utilisation": round(busy / (cores * clock), 4),
        "efficiency_vs_ideal": round(ideal / clock, 4), "sim_wall_s": round(wall, 1),
        "longest_task_s": round(longest, 1),
    }


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


SIZES = [16, 32, 64, 128, 256, 512, 1024]
QUICK_SIZES = [16, 32]


def run_sizes(sizes: List[int], tasks_per_core: int = 8, echo: bool = True) -> List[Dict[str, Any]]:
    """Each size in its own process, so that the peak RSS is that size's own."""
    import subprocess

    rows = []
    for n in sizes:
        code = f"import json; from bench.scale import simulate; print(json.dumps(simulate({n}, {tasks_per_core})))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        if echo:
            print(json.dumps(row), flush=True)
    return rows


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="*", default=SIZES)
    ap.add_argument("--tasks-per-core", type=int, default=8)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--plot", metavar="FILE.png")
    args = ap.parse_args(argv)
    rows = run_sizes(args.nodes, args.tasks_per_core)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    if args.plot:
        plot(rows, args.plot)
    return 0


def plot(rows: List[Dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = [r["nodes"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(nodes, [r["gov_us_per_task"] for r in rows], "o-", label="governor")
    axes[0].plot(nodes, [r["part_us_per_task"] for r in rows], "s-", label="all partitions (sum)")
    axes[0].set_ylabel("CPU µs per task")
    axes[0].legend()
    axes[1].plot(nodes, [r["messages_per_task"] for r in rows], "o-")
    axes[1].set_ylabel("governor<->partition messages per task")
    axes[1].set_ylim(0, max(3.0, max(r["messages_per_task"] for r in rows) * 1.2))
    axes[2].plot(nodes, [100 * r["efficiency_vs_ideal"] for r in rows], "o-", label="makespan: ideal / reached")
    axes[2].plot(nodes, [100 * r["utilisation"] for r in rows], "s-", label="core utilisation")
    axes[2].set_ylabel("%")
    axes[2].legend()
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("nodes (128 cores each, 16 per partition)")
        ax.grid(alpha=0.3)
    fig.suptitle("hpilot scale simulation: real governor and partition cores, virtual clock, 8 tasks per core")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
