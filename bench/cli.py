"""The command line's speed (issue #15): start-up of a client command, and `hpilot status` /
`hpilot top` against a governor with 100,000 iterations in flight.

- CLI-start: `hpilot status --json` against a small running run (found from the wd, over
  its local socket), median wall time of the whole command, and its ratio to a bare
  `python -c pass` measured alternately with it (target: within 3x).
- CLI-100k: `hpilot status` (the table a person reads) against a governor-mode run of
  100,000 iterations over 4 partitions of 16 cores with dry-run tasks that last an hour,
  so every iteration is in flight (running, held by a partition or queued at the
  governor) while it is measured: the whole command's wall time (target < 100 ms).
- TOP-100k: what `hpilot top` does for each redraw against the same run: one overview
  request and the rendering of the screen (rich, 120 columns), timed in one process, the
  way the live dashboard repeats it (target < 100 ms); `top --once` as a whole command is
  in the description.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

IN_FLIGHT = 100_000
QUICK_IN_FLIGHT = 10_000
# the console script a user types (`python -m hpilot.governor` adds runpy's own start-up)
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "hpilot")
HPILOT = [_SCRIPT] if os.access(_SCRIPT, os.X_OK) else [sys.executable, "-m", "hpilot.governor"]
ENV_KEYS = ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS", "HPILOT_SECRET")


def _env() -> Dict[str, str]:
    """The environment of the measured commands (bench's own, see ``measured_env``), without
    a service address that would point a client elsewhere."""
    from bench.__main__ import measured_env

    return {k: v for k, v in measured_env().items() if k not in ENV_KEYS}


def _wall(cmd: List[str], cwd: str) -> float:
    return _times(cmd, cwd)[0]


def _times(cmd: List[str], cwd: str) -> tuple:
    """(wall seconds, CPU seconds: user + system) of one run of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {os.waitstatus_to_exitcode(status)}: {err[:300]}")
    return wall, usage.ru_utime + usage.ru_stime


class _Run:
    """A background `hpilot run` in its own wd, stopped with `hpilot finish`."""

    def __init__(self, wd: str, args: List[str]) -> None:
        os.makedirs(wd, exist_ok=True)
        self.wd = wd
        self.proc = subprocess.Popen(HPILOT + ["run", *args], cwd=wd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=_env(),
                                     start_new_session=True)  # its own process group: stop() ends them all

    def overview(self) -> Dict[str, Any]:
        out = subprocess.run(HPILOT + ["status", "--json"], cwd=self.wd, capture_output=True, env=_env())
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def wait_until(self, ok: Any, timeout: float, what: str) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the run exited {self.proc.returncode} before {what}")
            d = self.overview()
            if d and ok(d):
                return d
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}")

    def stop(self) -> None:
        # a dry-run task ends when its time is up, even canceled: a finish would wait an hour, and so
        # would partition managers that lost their governor. SIGKILL to the run's process group.
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def start_up(workdir: str, n: int) -> Dict[str, float]:
    run = _Run(os.path.join(workdir, "cli-start"), ["--nodes", "2", "--dry-run-tasks", "3600", "--array", "0-9",
                                                     "--", "true"])
    try:
        run.wait_until(lambda d: d["iterations"]["running"] > 0, 60, "the small run to start")
        _times(HPILOT + ["status", "--json"], run.wd)  # warm-up: bytecode and file-system caches
        py, cli = [], []
        for _ in range(n):  # alternately, so that a noisy moment hits both
            py.append(_times([sys.executable, "-c", "pass"], run.wd))
            cli.append(_times(HPILOT + ["status", "--json"], run.wd))
        return {"python_s": statistics.median(t[0] for t in py), "status_s": statistics.median(t[0] for t in cli),
                "python_cpu_s": statistics.median(t[1] for t in py),
                "status_cpu_s": statistics.median(t[1] for t in cli)}
    finally:
        run.stop()


def in_flight(workdir: str, n: int, iterations: int) -> Dict[str, float]:
    wd = os.path.join(workdir, "cli-100k")
    run = _Run(wd, ["--nodes", "16,16,16,16", "--partition-nodes", "1", "--dry-run-tasks", "3600", "--no-journal",
                    "--array", f"0-{iterations - 1}", "--", "true"])
    try:
        run.wait_until(lambda d: d["iterations"]["running"] == 64 and len(d["resources"]["partitions"]) == 4, 120,
                       "every core to be busy")
        status = statistics.median(_wall(HPILOT + ["status"], wd) for _ in range(n))
        once = statistics.median(_wall(HPILOT + ["top", "--once"], wd) for _ in range(max(3, n // 3)))
        redraw, ask = _redraws(wd, n * 3)
        final = run.overview()
        assert sum(final["iterations"].values()) == iterations, final["iterations"]
        return {"status_s": status, "top_once_s": once, "redraw_s": redraw, "overview_s": ask}
    finally:
        run.stop()


def _redraws(wd: str, n: int) -> tuple:
    """Median seconds of one redraw of `hpilot top` (request + render) and of the request alone."""
    from hpilot.governor.cli import top
    from hpilot.governor.cli.connect import Client, find
    from rich.console import Console

    here = os.getcwd()
    os.chdir(wd)
    try:
        c = Client(find(None), 10.0)
    finally:
        os.chdir(here)
    console = Console(file=io.StringIO(), width=120, height=40, force_terminal=True)
    view = top.View(wd)
    redraws, asks = [], []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            view.add(top._ask(c, 40))
            t1 = time.perf_counter()
            console.print(view.render(120))
            t2 = time.perf_counter()
            asks.append(t1 - t0)
            redraws.append(t2 - t0)
    finally:
        c.close()
    return statistics.median(redraws), statistics.median(asks)


def run(repeat: int, workdir: str, file_w1_wall: float, quick: bool = False) -> List[Dict[str, Any]]:
    n = max(9, 3 * repeat)
    iterations = QUICK_IN_FLIGHT if quick else IN_FLIGHT
    base = {"makespan_s": None, "exit_codes": [0], "runs": [], "peak_mb": None, "tasks_per_s": None}
    s = start_up(workdir, n)
    ratio = s["status_s"] / s["python_s"]
    cpu = s["status_cpu_s"] / max(s["python_cpu_s"], 1e-6)
    rows = [{**base, "workload": "CLI-start", "tasks": 0, "wall_s": round(s["status_s"], 4),
             "vs_python": round(ratio, 2), "vs_python_cpu": round(cpu, 2),
             "description": f"`hpilot status --json` over the local socket; {ratio:.2f}x a bare `python -c pass` "
                            f"({s['python_s'] * 1000:.0f} ms) in wall time, {cpu:.2f}x in CPU time",
             "target": "<= 3x python -c pass", "met": ratio <= 3.0}]
    f = in_flight(workdir, n, iterations)
    rows.append({**base, "workload": "CLI-100k", "tasks": iterations, "wall_s": round(f["status_s"], 4),
                 "description": f"`hpilot status`, governor with {iterations:,} iterations in flight "
                                "(4 partitions, 64 running)",
                 "target": "< 100 ms", "met": f["status_s"] < 0.1})
    rows.append({**base, "workload": "TOP-100k", "tasks": iterations, "wall_s": round(f["redraw_s"], 4),
                 "description": f"one `hpilot top` redraw (overview request {f['overview_s'] * 1000:.1f} ms + "
                                f"render), same governor; `top --once` as a command {f['top_once_s']:.3f} s",
                 "target": "< 100 ms", "met": f["redraw_s"] < 0.1})
    return rows


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hpilot-bench-cli-") as d:
        for r in run(3, d, 0.0, quick="--quick" in sys.argv):
            print(json.dumps({k: r[k] for k in ("workload", "wall_s", "description", "met")}))
