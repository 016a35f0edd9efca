"""``python -m bench wrapper``: what ``--enable-rt-stats`` costs, and whether a record is ever lost.

W1 (2000 iterations of /bin/true, ``--nodes 2``) runs alternately without and with
``--enable-rt-stats`` (alternating, so that the noise of this shared machine falls
on both alike).  Reported: the median wall time of each and their ratio (target
<= 1.5), the median start overhead over all tasks -- the launcher about to spawn
to the wrapper starting the task, both on the node's monotonic clock (target
< 1 ms) -- and the records found in each run's ``rtstats/`` (target: 2000 of 2000
in every run).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from bench.__main__ import timed
from bench.workloads import w1

TASKS = 2000


def _records(run_dir: str) -> Dict[str, Any]:
    wrapped: Dict[str, Dict[str, Any]] = {}
    launched: Dict[str, Dict[str, Any]] = {}
    for path in glob.glob(os.path.join(run_dir, "rtstats", "wrapper-*.jsonl")):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                wrapped[r["task"]] = r
    for path in glob.glob(os.path.join(run_dir, "rtstats", "launch-*.jsonl")):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                launched[r["task"]] = r
    overheads = [wrapped[t]["start_mono"] - launched[t]["spawn_mono"] for t in wrapped if t in launched]
    return {"wrapper_records": len(wrapped), "launch_records": len(launched), "start_overheads": overheads}


def measure(runs: int, hpilot: List[str]) -> Dict[str, Any]:
    """W1 without and with rt-stats, alternating, ``runs`` times each: wall times, overheads, records."""
    plain: List[float] = []
    stats: List[float] = []
    counts: List[Dict[str, int]] = []
    overheads: List[float] = []
    with tempfile.TemporaryDirectory(prefix="hpilot-bench-wrapper-") as workdir:
        req = os.path.join(workdir, "w1.json")
        with open(req, "w") as f:
            json.dump(w1(TASKS), f)
        base = hpilot + ["run", req, "--nodes", "2", "--log", "warning"]
        for i in range(runs):
            wd0, wd1 = os.path.join(workdir, f"plain{i}"), os.path.join(workdir, f"rt{i}")
            os.makedirs(wd0)
            os.makedirs(wd1)
            plain.append(timed(base + ["--wd", wd0], wd0)[0])
            stats.append(timed(base + ["--wd", wd1, "--enable-rt-stats"], wd1)[0])
            rec = _records(os.path.realpath(os.path.join(wd1, ".hpilot", "latest")))
            overheads.extend(rec.pop("start_overheads"))
            counts.append(rec)
    p, s = statistics.median(plain), statistics.median(stats)
    return {
        "tasks": TASKS, "runs": runs, "plain_s": plain, "rtstats_s": stats, "records": counts,
        "plain_median_s": round(p, 4), "rtstats_median_s": round(s, 4), "ratio": round(s / p, 3),
        "median_start_overhead_ms": round(statistics.median(overheads) * 1000, 4) if overheads else None,
        "p95_start_overhead_ms": round(sorted(overheads)[int(0.95 * len(overheads))] * 1000, 4) if overheads else None,
        "complete_runs": sum(c["wrapper_records"] == TASKS and c["launch_records"] == TASKS for c in counts),
    }


def table(res: Dict[str, Any]) -> List[Tuple[str, str, str, str]]:
    """(measure, value, target, met) rows of a ``measure`` result: the table of the docs and the CLI."""
    med, p95 = res["median_start_overhead_ms"], res["p95_start_overhead_ms"]
    n, done = res["runs"], res["complete_runs"]
    return [
        ("W1 without rt-stats, median wall s", f"{res['plain_median_s']:.3f}", "-", "-"),
        ("W1 with --enable-rt-stats, median wall s", f"{res['rtstats_median_s']:.3f}", "-", "-"),
        ("ratio with/without", f"{res['ratio']:.2f}", "<= 1.5", "yes" if res["ratio"] <= 1.5 else "NO"),
        ("median start overhead (spawn -> wrapper start), ms", "-" if med is None else f"{med:.3f}", "< 1 ms",
         "yes" if med is not None and med < 1.0 else "NO"),
        ("p95 start overhead, ms", "-" if p95 is None else f"{p95:.3f}", "-", "-"),
        (f"runs with {TASKS}/{TASKS} wrapper and launch records", f"{done}/{n}", "every run",
         "yes" if done == n else "NO"),
    ]


def gantt_seconds(workdir: str, hpilot: List[str]) -> Dict[str, Any]:
    """``hpilot report RUN gantt`` of 2000 tasks on 40 nodes x 24 cores (issue #6: seconds, not minutes).

    The run directory is synthetic (the shape of tests/integration/test_report.py's big gantt),
    because 960 real cores are not to be had here; the report reads only the run directory.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return {"skipped": "matplotlib is not installed (pip install 'hpilot[report]')"}
    run = os.path.join(workdir, "gantt-run")
    _synthetic_run(run)
    out: Dict[str, Any] = {"tasks": 2000, "cores": 960}
    for ext in ("png", "pdf"):
        wall, _, code = timed(hpilot + ["report", run, "gantt", os.path.join(workdir, f"gantt.{ext}")], workdir)
        out[f"{ext}_s"] = round(wall, 3) if code == 0 else None
    return out


def _synthetic_run(run: str) -> None:
    os.makedirs(os.path.join(run, "rtstats"), exist_ok=True)
    t0 = 1_700_000_000.0
    nodes = [{"name": f"node{i:02d}", "cores": list(range(24))} for i in range(40)]
    with open(os.path.join(run, "final_status"), "w") as f:
        json.dump({"started": t0, "finished": t0 + 200, "resources": {"nodes": nodes, "total_cores": 960},
                   "total_jobs": 2, "jobs": {"SUCCEED": 2}}, f)
    with open(os.path.join(run, "rtstats", "launch-x.jsonl"), "w") as fl, \
            open(os.path.join(run, "rtstats", "wrapper-x.jsonl"), "w") as fw:
        for i in range(2000):
            node, slot = nodes[i % 40]["name"], (i // 40) % 24
            b = t0 + 1 + (i // 960) * 90 + slot * 0.01
            task = f"{'a' if i % 2 else 'b'}:{i}"
            fl.write(json.dumps({"v": 1, "task": task, "nodes": node, "per_node": "1", "cpus": None, "ncores": 1,
                                 "pid": 1000 + i, "spawn": b, "spawn_mono": b - t0, "end": b + 80,
                                 "end_mono": b + 80 - t0, "exit": 0, "reason": None}) + "\n")
            fw.write(json.dumps({"v": 1, "task": task, "host": node, "start": b + 0.001, "stop": b + 79.9,
                                 "start_mono": b - t0 + 0.001, "stop_mono": b - t0 + 79.9, "exit": 0,
                                 "signal": 0}) + "\n")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench wrapper", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="runs of W1 with rt-stats (and as many without)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--hpilot", default=None, help="command to run hpilot (default: this Python -m hpilot.governor)")
    args = ap.parse_args(argv)
    hpilot = args.hpilot.split() if args.hpilot else [sys.executable, "-m", "hpilot.governor"]
    res = measure(args.runs, hpilot)
    rows = table(res)
    print(f"W1 x {args.runs} runs each way, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cpus")
    print("| measure | value | target | met |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("records per run (wrapper/launch): " + ", ".join(f"{c['wrapper_records']}/{c['launch_records']}"
                                                           for c in res["records"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0 if all(r[3] != "NO" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
