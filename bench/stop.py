"""The end of a pilot's life (issue #12): what the guard costs, and how fast a SIGTERM stops a run.

- E-W1: W1 (2000 x /bin/true) with each launcher's guard (launcher/guard.py), as hpilot
  runs, against W1 without it, in the same run, alternating: the "without" runs are the
  same command with ``LocalLauncher._guarded`` replaced by the identity before the command
  starts (no task is told to the guard and none carries its token; no guard is started).
- E-stop: 1,000 tasks running (``sleep 600`` on 1,000 virtual cores), then SIGTERM: the
  time from the signal to the end of the process, whose run must be resumable (exit 75,
  ``final_status`` saying 1,000 iterations left, ``hpilot resume --dry-run`` agreeing).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

from hpilot.governor.service import journal as journal_of_run

from bench.__main__ import measured_env
from bench.workloads import w1

UNGUARDED = ("import sys; import hpilot.launcher.local as l; l.LocalLauncher._guarded = lambda self, req: req; "
             "from hpilot.governor.cli.main import main; sys.argv = ['hpilot'] + sys.argv[1:]; main()")
RUNNING = 1000


def _w1(workdir: str, guarded: bool) -> float:
    wd = os.path.join(workdir, "EW1-" + ("guard" if guarded else "noguard"))
    os.makedirs(wd, exist_ok=True)
    req = os.path.join(wd, "requests.json")
    with open(req, "w") as f:
        json.dump(w1(), f)
    head = [sys.executable, "-m", "hpilot.governor"] if guarded else [sys.executable, "-c", UNGUARDED]
    t0 = time.perf_counter()
    subprocess.run([*head, "run", req, "--nodes", "2", "--log", "warning"], cwd=wd, stdout=subprocess.DEVNULL,
                   check=True, env=measured_env())
    return time.perf_counter() - t0


def _stop(workdir: str, n: int) -> float:
    """Seconds from SIGTERM to the end of a run with ``n`` tasks running; checks it can be resumed."""
    wd = os.path.join(workdir, f"Estop-{time.monotonic_ns()}")
    os.makedirs(wd)
    req = os.path.join(wd, "requests.json")
    with open(req, "w") as f:
        json.dump([{"request": "submit", "jobs": [{"name": "long", "iteration": {"stop": n},
                                                   "execution": {"exec": "/bin/sleep", "args": ["600"]}}]},
                   {"request": "control", "command": "finishAfterAllTasksDone"}], f)
    proc = subprocess.Popen([sys.executable, "-m", "hpilot.governor", "run", req, "--nodes", str(n), "--log",
                             "warning", "--no-progress", "--task-output", "discard"], cwd=wd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = os.path.join(wd, ".hpilot", "latest", "journal")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # every task started (journaled) before the signal
        try:
            if sum(1 for _ in journal_of_run.started(journal_of_run.read(journal).records)) >= n:
                break
        except (OSError, journal_of_run.JournalError):
            pass
        time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError(f"{n} tasks did not all start")
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait()
    took = time.perf_counter() - t0
    with open(os.path.join(wd, ".hpilot", "latest", "final_status")) as f:
        status = json.load(f)
    plan = subprocess.run([sys.executable, "-m", "hpilot.governor", "resume", "--dry-run", "--json", wd],
                          capture_output=True, text=True, check=True)
    left = status["interrupted"]["left_to_resume"] if status.get("interrupted") else None
    if code != 75 or left != n or json.loads(plan.stdout)["to_run"] != n:
        raise RuntimeError(f"not resumable: exit {code}, left {left}, plan {plan.stdout.strip()[:200]}")
    return took


def run(repeat: int, workdir: str, file_w1_wall: float, quick: bool = False) -> List[Dict[str, Any]]:
    with_guard: List[float] = []
    without: List[float] = []
    for i in range(max(repeat, 3)):  # alternating, so that both meet the same load
        for guarded in ((True, False) if i % 2 == 0 else (False, True)):
            (with_guard if guarded else without).append(_w1(workdir, guarded))
    on, off = statistics.median(with_guard), statistics.median(without)
    n = 200 if quick else RUNNING
    stops = [_stop(workdir, n) for _ in range(repeat)]
    stop = statistics.median(stops)
    base = {"peak_mb": 0.0, "makespan_s": None, "exit_codes": [0], "runs": []}
    return [
        {**base, "workload": "E-W1", "description": "W1 with each launcher's guard (the default)", "tasks": 2000,
         "wall_s": round(on, 4), "tasks_per_s": round(2000 / on, 1), "guard_ratio": round(on / off, 3),
         "unguarded_s": round(off, 4), "target": f"<= 1.05x without the guard ({off:.3f} s): {on / off:.2f}x",
         "met": on / off <= 1.05},
        {**base, "workload": "E-stop", "description": f"SIGTERM with {n:,} tasks running, to a resumable end",
         "tasks": n, "wall_s": round(stop, 4), "tasks_per_s": None, "runs": [round(s, 4) for s in stops],
         "target": "< 2 s", "met": stop < 2.0},
    ]
