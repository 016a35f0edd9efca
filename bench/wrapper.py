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
from typing import Any, Dict, List, Optional

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


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench wrapper", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="runs of W1 with rt-stats (and as many without)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--hpilot", default=None, help="command to run hpilot (default: this Python -m hpilot.governor)")
    args = ap.parse_args(argv)
    hpilot = args.hpilot.split() if args.hpilot else [sys.executable, "-m", "hpilot.governor"]
    plain: List[float] = []
    stats: List[float] = []
    counts: List[Dict[str, int]] = []
    overheads: List[float] = []
    with tempfile.TemporaryDirectory(prefix="hpilot-bench-wrapper-") as workdir:
        req = os.path.join(workdir, "w1.json")
        with open(req, "w") as f:
            json.dump(w1(TASKS), f)
        base = hpilot + ["run", req, "--nodes", "2", "--log", "warning"]
        for i in range(args.runs):
            wd0, wd1 = os.path.join(workdir, f"plain{i}"), os.path.join(workdir, f"rt{i}")
            os.makedirs(wd0)
            os.makedirs(wd1)
            plain.append(timed(base + ["--wd", wd0], wd0)[0])
            stats.append(timed(base + ["--wd", wd1, "--enable-rt-stats"], wd1)[0])
            rec = _records(os.path.realpath(os.path.join(wd1, ".hpilot", "latest")))
            overheads.extend(rec.pop("start_overheads"))
            counts.append(rec)
    p, s = statistics.median(plain), statistics.median(stats)
    median_ms = statistics.median(overheads) * 1000 if overheads else float("nan")
    p95_ms = sorted(overheads)[int(0.95 * len(overheads))] * 1000 if overheads else float("nan")
    complete = [c["wrapper_records"] == TASKS and c["launch_records"] == TASKS for c in counts]
    rows = [
        ("W1 without rt-stats, median wall s", f"{p:.3f}", "-", "-"),
        ("W1 with --enable-rt-stats, median wall s", f"{s:.3f}", "-", "-"),
        ("ratio with/without", f"{s / p:.2f}", "<= 1.5", "yes" if s / p <= 1.5 else "NO"),
        ("median start overhead (spawn -> wrapper start), ms", f"{median_ms:.3f}", "< 1 ms",
         "yes" if median_ms < 1.0 else "NO"),
        ("p95 start overhead, ms", f"{p95_ms:.3f}", "-", "-"),
        (f"runs with {TASKS}/{TASKS} wrapper and launch records", f"{sum(complete)}/{len(complete)}",
         "every run", "yes" if all(complete) else "NO"),
    ]
    print(f"W1 x {args.runs} runs each way, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cpus")
    print("| measure | value | target | met |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print("records per run (wrapper/launch): " + ", ".join(f"{c['wrapper_records']}/{c['launch_records']}"
                                                           for c in counts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"plain_s": plain, "rtstats_s": stats, "records": counts, "median_start_overhead_ms": median_ms,
                       "p95_start_overhead_ms": p95_ms}, f, indent=2)
    return 0 if all(r[3] != "NO" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
