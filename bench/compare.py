"""``python -m bench.compare``: two hpilot installs measured in one run, alternately.

A change's cost on a shared, noisy machine shows only when both sides run under the same
load: each round runs every workload once with the *before* interpreter and once with the
*after* one (order alternating between rounds), and the table gives the medians and the
ratio after/before.  Each interpreter is a Python with its own hpilot installed (e.g. a
venv with ``pip install -e`` of another checkout).

    python -m bench.compare --before /path/venv-old/bin/python --after .venv/bin/python \
        --rounds 5 --json docs/compare.json

Workloads: W1 (2000 x /bin/true from a request file, 2 virtual cores per CPU), API (the
same 2000 through LocalManager, submit and wait4all), G-1/2/4/8 (100,000 dry-run
iterations over 8 nodes of 8 virtual cores split into 1, 2, 4 or 8 partitions) and G-1M
(1,000,000 dry-run iterations over 8 partitions, no journal, as bench/governor.py's G-1M).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

from bench.__main__ import measured_env

W1_TASKS = 2000
G_ITERS = 100_000

API_SNIPPET = """
import sys, time
from hpilot.governor import Jobs, LocalManager
m = LocalManager(["--nodes", sys.argv[1], "--wd", sys.argv[2], "--log", "warning"])
t0 = time.perf_counter()
m.submit(Jobs().add(name="w1", iteration=int(sys.argv[3]), exec="/bin/true"))
m.wait4all()
print(time.perf_counter() - t0)
m.finish()
"""


def _requests(path: str, n: int) -> str:
    with open(path, "w") as f:
        json.dump([{"request": "submit", "jobs": [{"name": "w", "iteration": {"stop": n},
                                                   "execution": {"exec": "/bin/true"}}]},
                   {"request": "control", "command": "finishAfterAllTasksDone"}], f)
    return path


def _wall(cmd: List[str], cwd: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=measured_env())
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-300:]}")
    return wall


def workloads(work: str, cores: int, g1m_iters: int = 1_000_000) -> Dict[str, Callable[[str, str], float]]:
    """name -> run(python, wd) -> seconds."""
    w1 = _requests(os.path.join(work, "w1.json"), W1_TASKS)
    g = _requests(os.path.join(work, "g.json"), G_ITERS)
    g1m = _requests(os.path.join(work, "g1m.json"), g1m_iters)

    def file_w1(py: str, wd: str) -> float:
        return _wall([py, "-m", "hpilot.governor", "run", w1, "--nodes", str(cores), "--log", "warning"], wd)

    def api_w1(py: str, wd: str) -> float:
        p = subprocess.run([py, "-c", API_SNIPPET, str(cores), wd, str(W1_TASKS)], cwd=wd, capture_output=True,
                           text=True, env=measured_env())
        if p.returncode != 0:
            raise RuntimeError(f"API run exited {p.returncode}: {p.stderr.strip()[-300:]}")
        return float(p.stdout.strip().splitlines()[-1])

    def governor(parts: int) -> Callable[[str, str], float]:
        def run(py: str, wd: str) -> float:
            return _wall([py, "-m", "hpilot.governor", "run", g, "--nodes", ",".join(["8"] * 8), "--partition-nodes",
                          str(8 // parts), "--dry-run-tasks", "0", "--log", "warning"], wd)
        return run

    def big(py: str, wd: str) -> float:
        return _wall([py, "-m", "hpilot.governor", "run", g1m, "--nodes", ",".join(["8"] * 8), "--partition-nodes",
                      "1", "--dry-run-tasks", "0", "--log", "warning", "--no-journal"], wd)

    out: Dict[str, Callable[[str, str], float]] = {"W1": file_w1, "API": api_w1, "G-1M": big}
    for parts in (1, 2, 4, 8):
        out[f"G-{parts}"] = governor(parts)
    return out


def compare(before: str, after: str, rounds: int, names: List[str],
            g1m_iters: int = 1_000_000) -> List[Dict[str, Any]]:
    cores = 2 * (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="hpilot-compare-") as work:
        runs = workloads(work, cores, g1m_iters)
        times: Dict[Tuple[str, str], List[float]] = {}
        for r in range(rounds):
            order = [("before", before), ("after", after)]
            if r % 2:
                order.reverse()
            for name in names:
                for side, py in order:
                    wd = tempfile.mkdtemp(dir=work)
                    times.setdefault((name, side), []).append(runs[name](py, wd))
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    rows = []
    for name in names:
        b = statistics.median(times[(name, "before")])
        a = statistics.median(times[(name, "after")])
        tasks = W1_TASKS if name in ("W1", "API") else (g1m_iters if name == "G-1M" else G_ITERS)
        rows.append({"workload": name, "tasks": tasks, "before_s": round(b, 4), "after_s": round(a, 4),
                     "ratio": round(a / b, 3), "speedup": round(b / a, 3),
                     "before_per_s": round(tasks / b), "after_per_s": round(tasks / a),
                     "before_runs": [round(x, 4) for x in times[(name, "before")]],
                     "after_runs": [round(x, 4) for x in times[(name, "after")]]})
    return rows


def render(rows: List[Dict[str, Any]]) -> str:
    lines = ["| workload | before (s) | after (s) | after / before | before (tasks/s) | after (tasks/s) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['before_s']} | {r['after_s']} | {r['ratio']} | "
                     f"{r['before_per_s']:,} | {r['after_per_s']:,} |")
    return "\n".join(lines)


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="a Python with the old hpilot installed")
    ap.add_argument("--after", default=sys.executable, help="a Python with the new hpilot (default: this one)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("workloads", nargs="*", default=["W1", "API", "G-1", "G-2", "G-4", "G-8"])
    args = ap.parse_args(argv)
    rows = compare(args.before, args.after, args.rounds, args.workloads)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": args.rounds, "before": args.before, "after": args.after,
                       "cpus": os.cpu_count(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
