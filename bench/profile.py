"""Where the time goes: cProfile over hpilot's hot paths, for the "Where the time goes" section.

Four profiles, each reduced to its top functions by own time and their share of the total:

- scheduler: the PartitionCores of a scale simulation (bench/scale.py, 1 s tasks), only their own
  ``handle`` calls;
- routing: the GovernorCore with its Router in the same simulation;
- journal: writing finished-iteration records with hpilot's journal writer, then the
  resume replay (``resume_plan``) of that journal;
- spawn: W1 (2000 ``/bin/true``, ``--nodes 2``) through the local launcher, the real
  ``hpilot run`` under ``python -m cProfile``.

The first three run in this process (no processes, no sockets); spawn is a subprocess,
because a service forks and execs and owns its event loop.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

TOP = 8
FULL = {"scale_nodes": 32, "journal_records": 200_000, "w1_tasks": 2000}
QUICK = {"scale_nodes": 16, "journal_records": 20_000, "w1_tasks": 500}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _name(key: Tuple[str, int, str]) -> str:
    """``launcher/local.py:337(_no_inheritable_fds)``; built-ins as cProfile names them."""
    path, line, func = key
    if path == "~" or not path:
        return func
    if path.startswith(REPO + os.sep):
        path = os.path.relpath(path, REPO)
    elif "site-packages" in path:
        path = path.split("site-packages" + os.sep, 1)[1]
    else:
        path = os.path.basename(path)
    return f"{path}:{line}({func})"


def summarise(stats: pstats.Stats, top: int = TOP) -> Dict[str, Any]:
    """Total own time, and the ``top`` functions by own time with their share and calls."""
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values())
    rows = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {"total_s": round(total, 4), "top": [
        {"function": _name(k), "own_s": round(v[2], 4), "share": round(v[2] / total, 4) if total else 0.0,
         "calls": v[1]} for k, v in rows]}


def own_time(stats: pstats.Stats, *needles: str) -> float:
    """Own seconds of every function whose name contains one of ``needles``."""
    table = stats.stats  # type: ignore[attr-defined]
    return sum(v[2] for k, v in table.items() if any(n in _name(k) for n in needles))


def profile_cores(nodes: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Scheduler and routing from one scale simulation, each profiler on its own core's calls."""
    from bench.scale import simulate

    profs = {"governor": cProfile.Profile(), "partition": cProfile.Profile()}
    row = simulate(nodes, "governor", "1s", 8, profilers=profs)
    sched = summarise(pstats.Stats(profs["partition"]))
    route = summarise(pstats.Stats(profs["governor"]))
    for part in (sched, route):
        part.update(tasks=row["tasks"], nodes=nodes, partitions=row["partitions"])
        part["us_per_task"] = round(1e6 * part["total_s"] / row["tasks"], 2)
    return sched, route


def profile_journal(records: int, workdir: str) -> Dict[str, Any]:
    """hpilot's journal writer over ``records`` finished iterations, then their replay."""
    from hpilot.governor.service.resume import resume_plan

    from bench.journal import write_replay_journal

    wd = os.path.join(workdir, "journal-profile")
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    write_replay_journal(os.path.join(wd, ".hpilot", "r1"), records + records // 1000, records)
    t1 = time.perf_counter()
    plan = resume_plan(wd)
    prof.disable()
    t2 = time.perf_counter()
    assert plan.iterations_done == records, plan.iterations_done
    out = summarise(pstats.Stats(prof))
    out.update(records=records, write_s=round(t1 - t0, 3), replay_s=round(t2 - t1, 3),
               us_per_record=round(1e6 * (t2 - t0) / records, 2))
    return out


def _profiled_run(wd: str, name: str, requests: List[Dict[str, Any]]) -> pstats.Stats:
    """``hpilot run`` of ``requests`` under ``python -m cProfile``, in ``wd``."""
    req, out = os.path.join(wd, f"{name}.json"), os.path.join(wd, f"{name}.prof")
    with open(req, "w") as f:
        json.dump(requests, f)
    subprocess.run([sys.executable, "-m", "cProfile", "-o", out, "-m", "hpilot.governor", "run", req,
                    "--nodes", "2", "--log", "warning", "--wd", os.path.join(wd, name)], cwd=wd, check=True,
                   capture_output=True, timeout=600)
    return pstats.Stats(out)


def profile_spawn(tasks: int, workdir: str) -> Dict[str, Any]:
    """W1 under cProfile: posix_spawn, waiting, and the rest, which is hpilot's own work.

    W0 (an empty request file) is profiled too: its total is start-up, imports and
    shutdown, which W1's total less posix_spawn and waiting must also leave out to be
    hpilot's work per task.
    """
    from bench.workloads import w0, w1

    wd = os.path.join(workdir, "spawn-profile")
    os.makedirs(wd, exist_ok=True)
    empty = summarise(_profiled_run(wd, "w0", w0()))["total_s"]
    stats = _profiled_run(wd, "w1", w1(tasks))
    res = summarise(stats)
    spawn = own_time(stats, "posix.posix_spawn")
    wait = own_time(stats, "poll.py", "(poll)", "epoll")
    work = max(0.0, res["total_s"] - spawn - wait - empty)
    res.update(tasks=tasks, posix_spawn_s=round(spawn, 4), wait_s=round(wait, 4), startup_s=round(empty, 4),
               posix_spawn_share=round(spawn / res["total_s"], 4) if res["total_s"] else 0.0,
               own_us_per_task=round(1e6 * work / tasks, 1))
    return res


def import_cost(module: str, repeat: int = 3) -> float:
    """Seconds that importing ``module`` adds to a Python start (median of ``repeat``)."""
    def start(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - t0

    with_it = statistics.median(start(f"import {module}") for _ in range(repeat))
    bare = statistics.median(start("pass") for _ in range(repeat))
    return max(0.0, with_it - bare)


def run(quick: bool = False, workdir: Optional[str] = None) -> Dict[str, Any]:
    """Every profile of the section; ``quick`` uses smaller sizes."""
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="hpilot-bench-profile-") as tmp:
        wd = workdir or tmp
        sched, route = profile_cores(sizes["scale_nodes"])
        return {
            "scheduler": sched, "routing": route,
            "journal": profile_journal(sizes["journal_records"], wd),
            "spawn": profile_spawn(sizes["w1_tasks"], wd),
            "networkx_import_s": round(import_cost("networkx"), 4),
        }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
