"""Task output streaming (issue #15): W1 with every task writing a line, output streamed into
the run dir (the default) against output discarded (``--task-output discard``), in the same run.

The runs alternate (stream, discard, stream, ...) so that a change in the machine's load
falls on both sides; the figure is the ratio of the medians of the wall times, and the
ratio of the CPU times (user + system of hpilot and its tasks) is given too: on a shared,
loaded machine it says what streaming costs better than the wall time.  The stream runs
are checked: every task's line must be in the output files, read back by ``hpilot log``'s
reader.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

from bench.__main__ import measured_env
from bench.workloads import w1

TASKS = 2000
QUICK_TASKS = 500


def _requests(n: int) -> List[Dict[str, Any]]:
    reqs = w1(n)
    reqs[0]["jobs"][0]["execution"] = {"exec": "/bin/echo", "args": ["line ${it} of the sweep"]}
    return reqs


def _check(wd: str, n: int) -> bool:
    """Every task's line is in the run's output files."""
    from hpilot.launcher.output import output_dir, read_output

    run = os.path.realpath(os.path.join(wd, ".hpilot", "latest"))
    by_task, _ = read_output(output_dir(run), lambda t: True)
    return len(by_task) == n and all(a[-1].text("o") == f"line {t.split(':')[1]} of the sweep\n".encode()
                                     for t, a in by_task.items())


def _timed(cmd: List[str], cwd: str) -> Tuple[float, float, int]:
    """Wall seconds, CPU seconds (the process and the children it waited for), exit status."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=measured_env())
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def run(repeat: int, workdir: str, file_w1_wall: float, quick: bool = False) -> List[Dict[str, Any]]:
    n = QUICK_TASKS if quick else TASKS
    hpilot = [sys.executable, "-m", "hpilot.governor"]
    walls: Dict[str, List[float]] = {"stream": [], "discard": []}
    cpus: Dict[str, List[float]] = {"stream": [], "discard": []}
    codes: List[int] = []
    complete = 0
    for _ in range(max(repeat, 5)):
        for mode in ("stream", "discard"):
            wd = os.path.join(workdir, f"O-W1-{mode}")
            os.makedirs(wd, exist_ok=True)
            req = os.path.join(wd, "requests.json")
            with open(req, "w") as f:
                json.dump(_requests(n), f)
            wall, cpu, code = _timed(hpilot + ["run", req, "--nodes", "2", "--log", "warning", "--task-output",
                                               mode], wd)
            walls[mode].append(wall)
            cpus[mode].append(cpu)
            codes.append(code)
            if mode == "stream":
                complete += _check(wd, n)
    on, off = statistics.median(walls["stream"]), statistics.median(walls["discard"])
    ratio = on / off
    cpu_ratio = statistics.median(cpus["stream"]) / statistics.median(cpus["discard"])
    return [{"workload": "O-W1", "description": f"W1 ({n} x /bin/echo a line), output streamed vs discarded",
             "tasks": n, "wall_s": round(on, 4), "tasks_per_s": round(n / on, 1), "peak_mb": 0.0,
             "makespan_s": None, "exit_codes": codes, "runs": [round(w, 4) for w in walls["stream"]],
             "discard_s": round(off, 4), "discard_runs": [round(w, 4) for w in walls["discard"]],
             "stream_ratio": round(ratio, 3), "cpu_ratio": round(cpu_ratio, 3),
             "cpu_s": round(statistics.median(cpus["stream"]), 3),
             "discard_cpu_s": round(statistics.median(cpus["discard"]), 3),
             "complete_runs": complete, "stream_runs": len(walls["stream"]),
             "target": f"<= 1.1x discarded ({off:.3f} s): {ratio:.2f}x", "met": ratio <= 1.1}]
