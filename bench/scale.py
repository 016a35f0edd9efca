"""Scale without a large machine: the real governor and partition cores on a virtual clock.

``python -m bench.scale`` builds allocations of 16 to 1,024 virtual nodes of 128 cores and
runs one job of ``8 x cores`` iterations through the real ``GovernorCore`` (with its
Router) and real ``PartitionCore`` s, the same code that runs in the processes. No sockets
and no processes: a task "runs" for its simulated duration on a virtual clock.

Every workload runs twice in the same run, to isolate what the hierarchy costs:

- **governor**: partitions of 16 nodes, each with its own PartitionCore, routed by credit;
- **flat**: one partition of all the nodes with the same policy (the list scheduler a
  single manager would be), its credit larger than the job.

Each partition works in loop passes of ``TICK`` virtual seconds, as a partition manager
does: it takes the ends of that pass, places what fits, and sends its reports as a
partition manager does (``partition.runner.reports_due``): once per report period, at once
for an exception or when it has nothing queued; a message between the governor and a
partition arrives one pass later (the flat partition is in the governor's process: every
pass, no delay). Workloads: ``0.1s``
and ``1s`` tasks (uniform within 10 %), where control-plane cost shows, and ``lognormal``
(median 60 s, sigma 0.8, capped at 1 h), the usual shape of a sweep.

Measured per run: the governor's CPU per task (the thread's CPU time inside ``GovernorCore.handle``),
the partitions' (summed), messages per task, the makespan and the makespan difference of
governor against flat. And the governor's own saturation rate: tasks per second of
governor CPU when every partition's reports arrive at once (``saturation``).
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
from collections import defaultdict
from typing import Any, Callable, DefaultDict, Dict, List, Optional, Tuple

from hpilot.governor.core.events import ClientRequest, FromPart, PartitionJoined, SendToPartition
from hpilot.governor.core.governor import GovernorConfig, GovernorCore
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.partition.core import PartitionConfig, PartitionCore, Schedule, TaskEnded, TaskStarted
from hpilot.partition.manager import REPORT_EVERY
from hpilot.partition.messages import batched, is_exception
from hpilot.partition.models import EnvContext
from hpilot.partition.resources import Node, ResourceSet
from hpilot.partition.runner import reports_due

CORES_PER_NODE = 128
NODES_PER_PARTITION = 16
TICK = 0.01  # a partition manager's loop pass, in virtual seconds
LOCAL_CREDIT = 1 << 62  # the in-process partition of a single manager

WORKLOADS: Dict[str, Callable[[random.Random], float]] = {
    "0.1s": lambda rng: rng.uniform(0.09, 0.11),
    "1s": lambda rng: rng.uniform(0.9, 1.1),
    "lognormal": lambda rng: min(rng.lognormvariate(4.094, 0.8), 3600.0),  # median e^4.094 = 60 s
}
SHAPES = ("governor", "flat")


class _Sim:
    def __init__(self, nodes: int, shape: str, workload: str, seed: int,
                 profilers: Optional[Dict[str, cProfile.Profile]] = None) -> None:
        self.prof_gov = (profilers or {}).get("governor")
        self.prof_part = (profilers or {}).get("partition")
        self.rng = random.Random(seed)
        self.duration = WORKLOADS[workload]
        self.flat = shape == "flat"
        self.gov = GovernorCore(GovernorConfig(root_wd="/tmp"))
        self.parts: Dict[str, PartitionCore] = {}
        self.gov_cpu = self.part_cpu = 0.0
        self.messages = 0
        self.busy = self.longest = 0.0
        self.heap: List[Tuple[float, int, str, str]] = []  # (end, seq, partition, task)
        self.seq = 0
        self.started: Dict[str, float] = {}
        self.to_parts: DefaultDict[str, List[Any]] = defaultdict(list)  # delivered next pass
        self.to_gov: List[Tuple[str, Any]] = []  # delivered next pass
        # a partition manager's reports wait for its report period unless urgent (partition/manager.py)
        self.pending: DefaultDict[str, List[Any]] = defaultdict(list)
        self.flushed: Dict[str, float] = {}
        cfg = PartitionConfig(root_wd="/tmp", env=EnvContext(base_env={}))
        size = nodes if self.flat else NODES_PER_PARTITION
        for p in range(nodes // size):
            names = [f"n{p * size + i}" for i in range(size)]
            rs = ResourceSet(tuple(Node(n, tuple(range(CORES_PER_NODE))) for n in names), False, "simulated")
            self.parts[f"p{p}"] = PartitionCore(rs, cfg)
            self.governor(PartitionJoined(f"p{p}", tuple((n, CORES_PER_NODE) for n in names), (), 0.0,
                                          LOCAL_CREDIT if self.flat else None))

    def governor(self, ev: Any) -> None:
        if self.prof_gov is not None:
            self.prof_gov.enable()
        t0 = _cpu()
        actions = self.gov.handle(ev)
        self.gov_cpu += _cpu() - t0
        if self.prof_gov is not None:
            self.prof_gov.disable()
        for a in actions:
            if isinstance(a, SendToPartition):
                self.messages += 1
                self.to_parts[a.partition].append(a.message)

    def partition(self, name: str, events: List[Any], clock: float) -> None:
        """One loop pass of partition ``name``: its events, a placement, its starts."""
        core = self.parts[name]
        if self.prof_part is not None:
            self.prof_part.enable()
        t0 = _cpu()
        out: List[Any] = []
        for ev in events:
            out += core.handle(ev)
        out += core.handle(Schedule(clock))
        reports = [a for a in out if not isinstance(a, LaunchRequest)]
        for a in out:
            if isinstance(a, LaunchRequest):
                d = self.duration(self.rng)
                self.busy += d
                self.longest = max(self.longest, d)
                self.started[a.task_id] = clock
                self.seq += 1
                heapq.heappush(self.heap, (clock + d, self.seq, name, a.task_id))
                reports += core.handle(TaskStarted(a.task_id, 0, clock))
        self.part_cpu += _cpu() - t0
        if self.prof_part is not None:
            self.prof_part.disable()
        self.pending[name] += reports
        self.flush(name, clock)

    def flush(self, name: str, clock: float) -> None:
        """Send ``name``'s waiting reports as a partition manager does (``runner.reports_due``, at
        the end of a pass: nothing more to do now).  The flat partition is in the governor's
        process: it sends every pass."""
        waiting = self.pending.get(name)
        if not waiting:
            return
        since = clock - self.flushed.get(name, -1.0) + 1e-9  # virtual passes: TICKs that add up to a period
        if not self.flat and not reports_due(since, REPORT_EVERY, any(map(is_exception, waiting)),
                                             lambda: self.parts[name].queued_iterations == 0):
            return
        del self.pending[name]
        self.flushed[name] = clock
        reports = batched(waiting)  # the reports since the last flush, as a partition manager sends them
        self.messages += len(reports)
        self.to_gov.extend((name, r) for r in reports)

    def next_flush(self) -> Optional[float]:
        return min((self.flushed.get(n, -1.0) + REPORT_EVERY for n in self.pending), default=None)

    def run(self, tasks: int) -> float:
        self.governor(ClientRequest({"request": "submit", "jobs": [
            {"name": "sweep", "iteration": {"stop": tasks}, "execution": {"exec": "/bin/true"}}]}, 0.0))
        clock = 0.0
        while self.heap or self.to_parts or self.to_gov or self.pending:
            # the next pass: now if messages wait, else when the next task ends
            if not (self.to_parts or self.to_gov):
                due = [t for t in (self.heap[0][0] if self.heap else None, self.next_flush()) if t is not None]
                clock = max(clock, min(due))
            ends: DefaultDict[str, List[Any]] = defaultdict(list)
            while self.heap and self.heap[0][0] <= clock:
                end, _, name, task = heapq.heappop(self.heap)
                ends[name].append(TaskEnded(TaskExit(task, 0, self.started.pop(task), end)))
            inbox, self.to_parts = self.to_parts, defaultdict(list)
            for name in sorted(set(inbox) | set(ends)):  # sorted: the same run whatever the hash seed
                self.partition(name, inbox.get(name, []) + ends.get(name, []), clock)
            for name in list(self.pending):
                self.flush(name, clock)
            reports, self.to_gov = self.to_gov, []
            for name, r in reports:
                self.governor(FromPart(name, r))
            if self.flat:  # in the governor's own process: its work reaches the partition in this pass
                while self.to_parts:
                    inbox, self.to_parts = self.to_parts, defaultdict(list)
                    for name, msgs in inbox.items():
                        self.partition(name, msgs, clock)
                    reports, self.to_gov = self.to_gov, []
                    for name, r in reports:
                        self.governor(FromPart(name, r))
            clock += TICK
        return clock


def simulate(nodes: int, shape: str = "governor", workload: str = "lognormal", tasks_per_core: int = 8,
             seed: int = 1, profilers: Optional[Dict[str, cProfile.Profile]] = None) -> Dict[str, Any]:
    """One run; ``profilers`` ("governor", "partition") profile only the cores' own calls."""
    sim = _Sim(nodes, shape, workload, seed, profilers)
    cores = nodes * CORES_PER_NODE
    tasks = tasks_per_core * cores
    rss0 = _rss_mb()
    wall0 = time.perf_counter()
    makespan = sim.run(tasks)
    wall = time.perf_counter() - wall0
    rec = sim.gov.registry.get("sweep")
    assert rec is not None and rec.state.value == "SUCCEED", rec and rec.state
    ideal = max(sim.busy / cores, sim.longest)
    return {
        "nodes": nodes, "shape": shape, "workload": workload, "cores": cores, "partitions": len(sim.parts),
        "tasks": tasks, "gov_us_per_task": round(1e6 * sim.gov_cpu / tasks, 3),
        "part_us_per_task": round(1e6 * sim.part_cpu / tasks, 2),
        "messages_per_task": round(sim.messages / tasks, 3), "peak_rss_mb": round(_rss_mb(), 1),
        "rss_growth_mb": round(_rss_mb() - rss0, 1), "makespan_s": round(makespan, 3),
        "ideal_makespan_s": round(ideal, 3), "utilisation": round(sim.busy / (cores * makespan), 4),
        "efficiency_vs_ideal": round(ideal / makespan, 4), "sim_wall_s": round(wall, 1),
        "longest_task_s": round(sim.longest, 1),
    }


def saturation(nodes: int, passes: int = 3, seed: int = 1) -> Dict[str, Any]:
    """The governor alone, with every partition answering at once: each pass, every partition
    reports a full load of ends and starts; the rate is tasks per second of governor CPU."""
    sim = _Sim(nodes, "governor", "1s", seed)
    cores = nodes * CORES_PER_NODE
    sim.governor(ClientRequest({"request": "submit", "jobs": [
        {"name": "sweep", "iteration": {"stop": cores * (passes + 3)}, "execution": {"exec": "/bin/true"}}]}, 0.0))
    clock, done = 0.0, 0
    sim.gov_cpu = 0.0
    for _ in range(passes + 1):
        inbox, sim.to_parts = sim.to_parts, defaultdict(list)
        ends: DefaultDict[str, List[Any]] = defaultdict(list)
        while sim.heap:
            end, _, name, task = heapq.heappop(sim.heap)
            ends[name].append(TaskEnded(TaskExit(task, 0, sim.started.pop(task), clock)))
        done += sum(len(v) for v in ends.values())
        for name in sim.parts:
            sim.partition(name, inbox.get(name, []) + ends.get(name, []), clock)
        reports, sim.to_gov = sim.to_gov, []
        cpu0 = sim.gov_cpu
        for name, r in reports:
            sim.governor(FromPart(name, r))
        if done == 0:
            sim.gov_cpu = cpu0  # the first pass only starts work: measure full passes
        clock += 1.0
    return {"nodes": nodes, "partitions": len(sim.parts), "tasks": done,
            "gov_us_per_task": round(1e6 * sim.gov_cpu / max(done, 1), 3),
            "tasks_per_s": round(done / sim.gov_cpu) if sim.gov_cpu else None}


# CPU time of this thread, not wall time: the figures hold on a machine others are using
_cpu = time.thread_time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


SIZES = [16, 128, 1024]
QUICK_SIZES = [16, 32]


def run_sizes(sizes: List[int], workloads: Optional[List[str]] = None, tasks_per_core: int = 8,
              echo: bool = True) -> Dict[str, Any]:
    """Each run in its own process, so that the peak RSS is that run's own."""
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def child(code: str) -> Dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=here)
        row: Dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        if echo:
            print(json.dumps(row), flush=True)
        return row

    rows = [child(f"import json; from bench.scale import simulate; "
                  f"print(json.dumps(simulate({n}, {shape!r}, {w!r}, {tasks_per_core})))")
            for w in (workloads or list(WORKLOADS)) for n in sizes for shape in SHAPES]
    sat = [child(f"import json; from bench.scale import saturation; print(json.dumps(saturation({n})))")
           for n in sizes]
    return {"rows": rows, "saturation": sat}


def compare(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Governor against flat, per workload and size: the makespan difference."""
    by = {(r["workload"], r["nodes"], r["shape"]): r for r in result["rows"]}
    out = []
    for (w, n, shape), r in by.items():
        flat = by.get((w, n, "flat"))
        if shape == "governor" and flat:
            out.append({"workload": w, "nodes": n, "governor_makespan_s": r["makespan_s"],
                        "flat_makespan_s": flat["makespan_s"],
                        "difference_pct": round(100 * (r["makespan_s"] / flat["makespan_s"] - 1), 3),
                        "gov_us_per_task": r["gov_us_per_task"], "flat_gov_us_per_task": flat["gov_us_per_task"]})
    return out


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="*", default=SIZES)
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--tasks-per-core", type=int, default=8)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--plot", metavar="FILE.png")
    args = ap.parse_args(argv)
    result = run_sizes(args.nodes, args.workloads, args.tasks_per_core)
    result["comparison"] = compare(result)
    for c in result["comparison"]:
        print(json.dumps(c))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.plot:
        plot(result, args.plot)
    return 0


def plot(result: Dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for w in sorted({r["workload"] for r in result["rows"]}):
        for shape, mark in (("governor", "o-"), ("flat", "s--")):
            rows = sorted((r for r in result["rows"] if r["workload"] == w and r["shape"] == shape),
                          key=lambda r: r["nodes"])
            if rows:
                axes[0].plot([r["nodes"] for r in rows], [r["gov_us_per_task"] for r in rows], mark,
                             label=f"{w}, {shape}")
    axes[0].set_ylabel("governor CPU µs per task")
    axes[0].legend(fontsize=7)
    comp = result.get("comparison") or compare(result)
    for w in sorted({c["workload"] for c in comp}):
        cs = sorted((c for c in comp if c["workload"] == w), key=lambda c: c["nodes"])
        axes[1].plot([c["nodes"] for c in cs], [c["difference_pct"] for c in cs], "o-", label=w)
    axes[1].axhline(1.0, color="grey", lw=0.8, ls=":")
    axes[1].set_ylabel("makespan: governor vs flat (%)")
    axes[1].legend(fontsize=7)
    sat = sorted(result.get("saturation", []), key=lambda s: s["nodes"])
    if sat:
        axes[2].plot([s["nodes"] for s in sat], [s["tasks_per_s"] for s in sat], "o-")
        axes[2].set_ylabel("governor saturation (tasks per s of its CPU)")
        axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("nodes (128 cores each; partitions of 16 nodes)")
        ax.grid(alpha=0.3)
    fig.suptitle("hpilot scale simulation: real governor and partition cores, virtual clock, 8 tasks per core")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
