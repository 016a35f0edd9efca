"""``python -m bench``: hpilot's workloads side by side with the raw spawn floor.

Every figure is from this run on this machine: the floor (the same 2000
``/bin/true`` run by ``xargs -P <cores>``, and a C loop of posix_spawn when a C
compiler is found) is measured right next to the workloads, and each workload is
reported as a ratio to it, because the machines we run on are shared and noisy.
Each measurement is the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from bench.workloads import EXPECTED_EXIT, WORKLOADS

# Suites beyond the request-file workloads: name -> module with
# run(repeat, workdir, file_w1_wall) -> rows (the same keys as run_workload's rows).
SUITES = {"API": "bench.api", "journal": "bench.journal", "governor": "bench.governor", "output": "bench.output",
          "stop": "bench.stop",
          "plots": "bench.plots", "cli": "bench.cli", "wire": "bench.wire"}

FLOOR_TASKS = 2000
C_SPAWN = r"""
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
extern char **environ;
int main(int argc, char **argv) {
    int n = atoi(argv[1]), par = atoi(argv[2]), running = 0, status;
    char *args[] = {"/bin/true", NULL};
    for (int i = 0; i < n; i++) {
        if (running >= par) { wait(&status); running--; }
        pid_t pid;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, args, environ) != 0) return 1;
        running++;
    }
    while (running-- > 0) wait(&status);
    return 0;
}
"""

# workload -> (check description, predicate on the result row)
TARGETS = {
    "W0": ("wall < 0.4 s", lambda r, f: r["wall_s"] < 0.4),
    "W1": (">= 1000 tasks/s and <= 2x floor", lambda r, f: r["tasks_per_s"] >= 1000 and r["ratio"] <= 2.0),
    "W2": (">= 1000 tasks/s and <= 2x floor", lambda r, f: r["tasks_per_s"] >= 1000 and r["ratio"] <= 2.0),
    "W4": ("makespan < 4.15 s", lambda r, f: r["makespan_s"] is not None and r["makespan_s"] < 4.15),
    "M1": ("peak memory < 300 MB", lambda r, f: r["peak_mb"] < 300),
}


def measured_env() -> Dict[str, str]:
    """The environment of every measured command.  PYTHONDONTWRITEBYTECODE is left out: an
    installed hpilot has its bytecode (pip compiles it at install time), and an editable
    tree gets it at the first run; without it every process (the service, each partition
    manager) compiles hpilot's modules from source at its start, which is not what a user's
    command does."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: List[str], cwd: str, expect: int = 0) -> Tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) of the process tree's largest member, exit code."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=measured_env())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != expect:
        print(f"  ! {' '.join(cmd)} exited {proc.returncode}: {err.strip()[:300]}", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024.0, proc.returncode


def floor_xargs(cores: int, repeat: int) -> float:
    cmd = ["bash", "-c", f"seq {FLOOR_TASKS} | xargs -P {cores} -n1 /bin/true --"]
    return statistics.median(timed(cmd, ".")[0] for _ in range(repeat))


def floor_c(cores: int, repeat: int, workdir: str) -> Optional[float]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, exe = os.path.join(workdir, "spawn.c"), os.path.join(workdir, "spawn")
    with open(src, "w") as f:
        f.write(C_SPAWN)
    if subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True).returncode != 0:
        return None
    return statistics.median(timed([exe, str(FLOOR_TASKS), str(cores)], ".")[0] for _ in range(repeat))


def makespan(run_dir: str) -> Optional[float]:
    """First start to last finish, from the JSON jobs.report history."""
    starts, ends = [], []
    try:
        with open(os.path.join(run_dir, "jobs.report")) as f:
            for line in f:
                e = json.loads(line)
                for h in e["history"]:
                    ts = time.mktime(time.strptime(h["time"][:19], "%Y-%m-%d %H:%M:%S")) + float(
                        "0." + h["time"][20:])
                    if h["state"] == "EXECUTING":
                        starts.append(ts)
                    elif h["state"] in ("SUCCEED", "FAILED", "CANCELED"):
                        ends.append(ts)
    except (OSError, ValueError, KeyError):
        return None
    return max(ends) - min(starts) if starts and ends else None


def run_workload(name: str, repeat: int, workdir: str, hpilot: List[str]) -> Dict[str, Any]:
    build, args, tasks, desc = WORKLOADS[name]
    wd = os.path.join(workdir, name)
    os.makedirs(wd, exist_ok=True)
    req = os.path.join(wd, "requests.json")
    with open(req, "w") as f:
        json.dump(build(), f)
    walls, mems, spans, codes = [], [], [], []
    for _ in range(repeat):
        cmd = hpilot + ["run", req, "--report-format", "json", "--log", "warning"] + args
        wall, mem, code = timed(cmd, wd, EXPECTED_EXIT.get(name, 0))
        walls.append(wall)
        mems.append(mem)
        codes.append(code)
        spans.append(makespan(os.path.realpath(os.path.join(wd, ".hpilot", "latest"))))
    wall = statistics.median(walls)
    good_spans = [s for s in spans if s is not None]
    return {
        "workload": name, "description": desc, "tasks": tasks, "wall_s": round(wall, 4),
        "tasks_per_s": round(tasks / wall, 1) if tasks else None,
        "peak_mb": round(max(mems), 1), "makespan_s": round(statistics.median(good_spans), 3) if good_spans else None,
        "exit_codes": codes, "runs": [round(w, 4) for w in walls],
    }


def run_qcg(name: str, qcg: str, repeat: int, workdir: str) -> Optional[Dict[str, Any]]:
    """The same request file under QCG-PilotJob's service (optional: --qcg PATH)."""
    build, args, tasks, desc = WORKLOADS[name]
    if name == "M1":
        return None  # QCG-PilotJob 0.14 does not support cancelJob
    wd = os.path.join(workdir, f"qcg-{name}")
    os.makedirs(wd, exist_ok=True)
    req = os.path.join(wd, "requests.json")
    with open(req, "w") as f:
        json.dump(build(), f)
    walls, mems, codes = [], [], []
    for _ in range(repeat):
        wall, mem, code = timed([qcg, "--file-path", req, "--log", "warning"] + args, wd)
        walls.append(wall)
        mems.append(mem)
        codes.append(code)
    wall = statistics.median(walls)
    return {"workload": f"{name} [QCG-PilotJob]", "description": desc, "tasks": tasks, "wall_s": round(wall, 4),
            "tasks_per_s": round(tasks / wall, 1) if tasks else None, "peak_mb": round(max(mems), 1),
            "makespan_s": None, "exit_codes": codes, "runs": [round(w, 4) for w in walls]}


def machine_info() -> Dict[str, Any]:
    """What the figures came from; the load average tells whether something else was running."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "loadavg": [round(x, 2) for x in load]}


def _targeted(row: Dict[str, Any], name: str) -> Dict[str, Any]:
    """Attach the issue's target for a request-file workload, if it has one."""
    target = TARGETS.get(name)
    if target:
        row["target"] = target[0]
        expect = EXPECTED_EXIT.get(name, 0)
        row["met"] = bool(target[1](row, None)) and all(c == expect for c in row["exit_codes"])
    return row


def measure(names: List[str], repeat: int, workdir: str, hpilot: List[str], fx: float,
            qcg: Optional[str] = None, quick: bool = False, w1_wall: Optional[float] = None) -> List[Dict[str, Any]]:
    """The rows of the main table, in the order named (suites get W1's wall time for their ratios).

    ``w1_wall`` is W1's wall time from an earlier call, so that a caller going suite by suite
    does not run W1 again; ``quick`` makes the suites use their small sizes.
    """
    import importlib

    rows: List[Dict[str, Any]] = []
    for name in names:
        if name in SUITES:
            w1_wall = next((r["wall_s"] for r in rows if r["workload"] == "W1"), w1_wall)
            if w1_wall is None:
                w1_wall = run_workload("W1", repeat, workdir, hpilot)["wall_s"]
            rows.extend(importlib.import_module(SUITES[name]).run(repeat, workdir, w1_wall, quick=quick))
            continue
        row = run_workload(name, repeat, workdir, hpilot)
        row["ratio"] = round(row["wall_s"] / fx, 2) if row["tasks"] == FLOOR_TASKS else None
        rows.append(_targeted(row, name))
        qrow = run_qcg(name, qcg, repeat, workdir) if qcg else None
        if qrow is not None:
            qrow["ratio"] = round(qrow["wall_s"] / fx, 2) if qrow["tasks"] == FLOOR_TASKS else None
            rows.append(qrow)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["wrapper"]:  # python -m bench wrapper: the rt-stats suite (bench/wrapper.py)
        from bench.wrapper import main as wrapper_main

        return wrapper_main(argv[1:])
    if argv[:1] == ["all"]:  # python -m bench all: every suite, and docs/benchmarks.md from that run
        from bench.all import main as all_main

        return all_main(argv[1:])
    if argv[:1] == ["agents"]:  # python -m bench agents: node agents on the local Slurm (bench/agents.py)
        from bench.agents import main as agents_main

        return agents_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", default=list(WORKLOADS) + list(SUITES),
                    help=f"any of {', '.join(list(WORKLOADS) + list(SUITES))}")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--hpilot", default=None, help="command to run hpilot (default: this Python -m hpilot.governor)")
    ap.add_argument("--qcg", default=None, metavar="PATH",
                    help="qcg-pm-service of an installed QCG-PilotJob: its rows go into the same table")
    args = ap.parse_args(argv)
    hpilot = args.hpilot.split() if args.hpilot else [sys.executable, "-m", "hpilot.governor"]
    cores = 2  # the workloads use --nodes 2; the floor gets the same parallelism
    with tempfile.TemporaryDirectory(prefix="hpilot-bench-") as workdir:
        fx = floor_xargs(cores, args.repeat)
        fc = floor_c(cores, args.repeat, workdir)
        rows = measure(args.workloads, args.repeat, workdir, hpilot, fx, args.qcg)
    machine = machine_info()
    print(f"machine: {machine['platform']}, {machine['cpus']} cpus, Python {machine['python']}, {machine['date']}")
    print(f"floor: {FLOOR_TASKS} x /bin/true, xargs -P {cores}: {fx:.3f} s ({FLOOR_TASKS / fx:.0f}/s)"
          + (f"; C posix_spawn loop: {fc:.3f} s ({FLOOR_TASKS / fc:.0f}/s)" if fc else "; no C compiler"))
    print(render(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "floor_xargs_s": fx, "floor_c_s": fc, "rows": rows}, f, indent=2)
    return 0 if all(r.get("met", True) for r in rows) else 1


def render(rows: List[Dict[str, Any]]) -> str:
    head = ["workload", "wall s", "tasks/s", "x floor", "makespan s", "peak MB", "target", "met"]
    fmt_mb = lambda r: f"{r['peak_mb']:.0f}" if r.get("peak_mb") else "-"  # noqa: E731
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            f"{r['workload']} ({r['description']})", f"{r['wall_s']:.3f}",
            f"{r['tasks_per_s']:.0f}" if r["tasks_per_s"] else "-",
            f"{r['ratio']:.2f}" if r.get("ratio") else "-",
            f"{r['makespan_s']:.3f}" if r.get("makespan_s") is not None else "-",
            fmt_mb(r), r.get("target", "-"),
            {True: "yes", False: "NO"}.get(r.get("met"), "-"),  # type: ignore[arg-type]
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
