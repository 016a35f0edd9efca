"""``scontrol suspend`` and ``scontrol resume`` of a running governor-mode job: Slurm stops every
process of the job (SIGSTOP: the batch script's governor, the partition managers srun started,
their node agents and tasks) and later continues them.  Every heartbeat watch then wakes to a
peer that said nothing for as long as the suspension; none of them may count it (launcher/vigil.py).
Before that, the governor declared both partitions lost on waking and the run could not finish.
The run must end as if nothing happened: exit 0, every iteration once (marker files), no peer
lost, and each watcher saying in its log that it saw its own pause.

The allocation's end moves with it: Slurm adds the suspended time to the job's end, and
``scontrol update TimeLimit=`` changes it.  hpilot reads the end again before it stops for it
(governor/service/stop.py), so the run stops ``--stop-before`` ahead of the end Slurm has now,
not of the one it read at the start.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import latest_run, wait_for, write_requests
from tests.killing import Executions, finished_in_journal, mark

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

SWEEP = 24
SUSPENDED = 6.0  # seconds: longer than 6 heartbeats of 0.5 s (the governor's) and 5 of 1 s (the agents')


def _sbatch(wd: Path, args: str, *sbatch: str) -> str:
    (wd / "job.sh").write_text(f"#!/bin/bash\nexec {sys.executable} -m hpilot.governor run jobs.json --wd . "
                               f"--no-progress {args}\n")
    out = subprocess.run(["sbatch", *sbatch, f"--job-name=susp-{uuid.uuid4().hex[:8]}", "-o", "out.txt", "job.sh"],
                         cwd=wd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    m = re.search(r"Submitted batch job (\d+)", out.stdout)
    assert m, out.stdout
    return m.group(1)


def _end(job: str) -> float:
    from hpilot.partition.slurm import job_window

    window = job_window(job)
    assert window is not None
    return window[1]


def _state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-o", "%t", "-j", job], capture_output=True, text=True)
    return out.stdout.strip()


def test_a_suspended_and_resumed_job_loses_nothing(tmp_path: Path) -> None:
    """``long``'s two tasks run 4 s of their 7 s wall time, across the suspension: stopped with
    the job, they have not used the suspended time (their agents move the wall times on)."""
    jobs = [{"name": "long", "iteration": {"stop": 2}, "resources": {"wt": "7s"}, "execution": {"script": mark("4")}},
            {"name": "sweep", "iteration": {"stop": SWEEP},
             "execution": {"script": mark("0.$(( (${it} * 7) % 9 + 1 ))")}}]
    write_requests(tmp_path / "jobs.json", [{"request": "submit", "jobs": jobs},
                                            {"request": "control", "command": "finishAfterAllTasksDone"}])
    job = _sbatch(tmp_path, "--slurm-partition-nodes 2 --partition-heartbeat 0.5", "-N4", "--ntasks-per-node=1",
                  "--time=5")
    marks = tmp_path / "marks"
    try:
        wait_for(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 4, 120, "some work done")
        subprocess.run(["scontrol", "suspend", job], check=True, timeout=30)
        assert _state(job) == "S"
        assert "long:" not in marks.read_text()  # its tasks are in the middle of their 4 s
        time.sleep(SUSPENDED)  # the suspension's length: a stimulus, not a wait for something
        subprocess.run(["scontrol", "resume", job], check=True, timeout=30)
        wait_for(lambda: _state(job) == "", 120, "the job to end")
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    said = (tmp_path / "out.txt").read_text()
    assert "Traceback" not in said
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    assert status["exit_status"] == 0, said
    assert status["iterations"]["succeeded"] == SWEEP + 2
    expected = {f"sweep:{i}" for i in range(SWEEP)} | {"long:0", "long:1"}
    Executions.read(tmp_path, {}).check(expected, set(), None)  # once each
    assert all(n == 1 for n in finished_in_journal(tmp_path).values())
    gov = (latest_run(tmp_path) / "service.log").read_text()
    parts = [p.read_text() for p in sorted((tmp_path / ".hpilot" / "partitions").glob("*/service.log"))]
    assert len(parts) == 2
    for text in [gov, *parts]:
        assert " lost" not in text and "silent for" not in text, text[-2000:]
    assert "this governor did not run for" in gov
    assert all("this manager did not run for" in t for t in parts)
    # ... and read the allocation's end again, which the suspension moved: what they hold back
    # for it (tasks whose wall time would pass it) is placed by the new one
    assert all("the allocation's end moved" in t for t in parts)


@pytest.mark.parametrize("how", ["suspend", "extend"])
def test_the_run_stops_ahead_of_the_end_slurm_has_now(tmp_path: Path, how: str) -> None:
    """A 1-minute job, suspended for 15 s (its end moves 15 s later) or given 30 s more
    (``scontrol update TimeLimit``): it stops 10 s ahead of the moved end, not of the first."""
    jobs = [{"name": "sweep", "iteration": {"stop": 400}, "execution": {"script": mark("2")}}]  # more than 2 min
    write_requests(tmp_path / "jobs.json", [{"request": "submit", "jobs": jobs},
                                            {"request": "control", "command": "finishAfterAllTasksDone"}])
    job = _sbatch(tmp_path, "--stop-before 10", "-N1", "--ntasks-per-node=1", "--time=1")
    marks = tmp_path / "marks"
    try:
        wait_for(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 2, 120, "some work done")
        first = _end(job)
        if how == "suspend":
            subprocess.run(["scontrol", "suspend", job], check=True, timeout=30)
            time.sleep(15)  # the suspension's length: a stimulus, not a wait for something
            subprocess.run(["scontrol", "resume", job], check=True, timeout=30)
        else:
            subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=00:01:30"], check=True, timeout=30)
        end = _end(job)
        assert end >= first + 14, (first, end)
        wait_for(lambda: _state(job) == "", 200, "the job to end")
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    said = (tmp_path / "out.txt").read_text()
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    at = time.strftime("%H:%M:%S", time.localtime(end))
    assert status["interrupted"]["reason"] == f"interrupted before the allocation's end ({at}; --stop-before 10s)", said
    assert status["exit_status"] == 75
    assert end - 10 - 1 <= status["finished"] <= end, (status["finished"], end)
    assert "the allocation's end moved" in (latest_run(tmp_path) / "service.log").read_text()
