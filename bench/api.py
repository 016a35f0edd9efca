"""API workloads: latency of one submit+wait, LocalManager start/finish, W1 through the API,
and QCG-PilotJob's own client waiting on hpilot (:mod:`bench.qcgclient`).

Each runs the real LocalManager (a service process on loopback) from this process.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Dict, List

from bench.workloads import w1

LATENCY_SAMPLES = 50


def _row(name: str, desc: str, wall: float, tasks: int = 0, **extra: Any) -> Dict[str, Any]:
    row = {"workload": name, "description": desc, "tasks": tasks, "wall_s": round(wall, 4),
           "tasks_per_s": round(tasks / wall, 1) if tasks else None, "peak_mb": 0.0, "makespan_s": None,
           "exit_codes": [0], "runs": []}
    row.update(extra)
    return row


def run(repeat: int, workdir: str, file_w1_wall: float, quick: bool = False) -> List[Dict[str, Any]]:
    """The API rows; ``quick`` changes nothing here: every row is already small."""
    from hpilot.governor import LocalManager

    wd = os.path.join(workdir, "API")
    os.makedirs(wd, exist_ok=True)
    args = ["--nodes", "2", "--wd", wd, "--log", "warning"]

    lifecycle = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        LocalManager(args).finish()
        lifecycle.append(time.perf_counter() - t0)
    start_finish = statistics.median(lifecycle)

    m = LocalManager(args)
    try:
        lat = []
        for i in range(LATENCY_SAMPLES):
            t0 = time.perf_counter()
            m.submit([{"name": f"lat{i}", "execution": {"exec": "/bin/true"}}])
            m.wait4(f"lat{i}")
            lat.append(time.perf_counter() - t0)
    finally:
        m.finish()
    latency = statistics.median(lat)

    job = w1()[0]["jobs"][0]
    walls = []
    for r in range(repeat):
        t0 = time.perf_counter()
        m = LocalManager(args)
        try:
            m.submit([{**job, "name": f"w1api{r}"}])
            m.wait4(f"w1api{r}")
        finally:
            m.finish()
        walls.append(time.perf_counter() - t0)
    w1_api = statistics.median(walls)
    ratio = w1_api / file_w1_wall if file_w1_wall else None
    from bench import qcgclient

    return qcgclient.run(workdir) + [
        _row("API-lat", f"submit + wait4 of /bin/true, median of {LATENCY_SAMPLES}", latency,
             target="median < 10 ms", met=latency < 0.010),
        _row("API-life", "LocalManager() start + finish()", start_finish,
             target="< 0.5 s", met=start_finish < 0.5),
        _row("API-W1", "W1 through LocalManager (start to finish)", w1_api, tasks=2000,
             api_vs_file=round(ratio, 2) if ratio else None,
             target="<= 1.3x W1 file interface", met=ratio is not None and ratio <= 1.3),
    ]
