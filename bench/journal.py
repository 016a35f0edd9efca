"""Journal workloads: W1 with the journal on vs off, and replaying a million-iteration journal.

The replay journal is written with hpilot's own journal writer (a submit of one
job of 1,000,000 iterations and 999,000 finished-iteration records), because
running 999,000 real tasks to produce it would take a quarter of an hour here.
The replay is the real resume code (``resume_plan``: read, check, rebuild).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

from bench.workloads import w1

REPLAY_TOTAL, REPLAY_DONE = 1_000_000, 999_000
QUICK_TOTAL, QUICK_DONE = 100_000, 99_900  # --quick: a tenth


def _w1_wall(workdir: str, extra: List[str], repeat: int) -> float:
    import json

    wd = os.path.join(workdir, "JW1" + "".join(extra).replace("-", ""))
    os.makedirs(wd, exist_ok=True)
    req = os.path.join(wd, "requests.json")
    with open(req, "w") as f:
        json.dump(w1(), f)
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hpilot.governor", "run", req, "--nodes", "2", "--log", "warning",
                        *extra], cwd=wd, stdout=subprocess.DEVNULL, check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def write_replay_journal(run_dir: str, total: int = REPLAY_TOTAL, done: int = REPLAY_DONE) -> str:
    from hpilot.governor.service import journal

    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, journal.FILE)
    j = journal.Journal(path, header={"run": os.path.basename(run_dir), "wd": os.path.dirname(run_dir)})
    values = {"rcnt": "1", "sname": "bench", "date": "d", "time": "t", "dateTime": "dt"}
    j.write([journal.json_record({"t": "submit", "time": 1.0, "values": values, "jobs": [
        {"name": "big", "iteration": {"stop": total}, "execution": {"exec": "/bin/true"}}]})])
    batch = []
    for i in range(done):
        batch.append(journal.finished_record("big", i, "SUCCEED", 0, 10.0 + i * 1e-3, 10.001 + i * 1e-3,
                                             "n0[0]", "/scratch", None))
        if len(batch) == 10_000:
            j.write(batch)
            batch = []
    j.write(batch)
    j.close()
    return path


def run(repeat: int, workdir: str, file_w1_wall: float, quick: bool = False) -> List[Dict[str, Any]]:
    """J-W1 (journal on vs off) and J-replay; ``quick`` replays a tenth of the journal."""
    total, done = (QUICK_TOTAL, QUICK_DONE) if quick else (REPLAY_TOTAL, REPLAY_DONE)
    on = _w1_wall(workdir, [], repeat)
    off = _w1_wall(workdir, ["--no-journal"], repeat)
    wd = os.path.join(workdir, "replay")
    write_replay_journal(os.path.join(wd, ".hpilot", "r1"), total, done)
    code = ("import time; from hpilot.governor.service.resume import resume_plan; t=time.perf_counter(); "
            f"p=resume_plan({wd!r}); print(time.perf_counter()-t, p.iterations_done, p.to_run)")
    replays = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        assert int(out[1]) == done and int(out[2]) == total - done
        replays.append(float(out[0]))
    replay = statistics.median(replays)
    base = {"peak_mb": 0.0, "makespan_s": None, "exit_codes": [0], "runs": []}
    return [
        {**base, "workload": "J-W1", "description": "W1 with the journal on (default)", "tasks": 2000,
         "wall_s": round(on, 4), "tasks_per_s": round(2000 / on, 1), "journal_ratio": round(on / off, 3),
         "journal_off_s": round(off, 4),
         "target": f"<= 1.1x journal off ({off:.3f} s): {on / off:.2f}x", "met": on / off <= 1.1},
        {**base, "workload": "J-replay", "description": f"resume replay: {total:,}-iteration job, {done:,} finished",
         "tasks": 0, "wall_s": round(replay, 4), "tasks_per_s": None, "target": "< 3 s", "met": replay < 3.0},
    ]
