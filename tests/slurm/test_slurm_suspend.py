"""``scontrol suspend`` and ``scontrol resume`` of a running governor-mode job: Slurm stops every
process of the job (SIGSTOP: the batch script's governor, the partition managers srun started,
their node agents and tasks) and later continues them.  Every heartbeat watch then wakes to a
peer that said nothing for as long as the suspension; none of them may count it (launcher/vigil.py).
Before that, the governor declared both partitions lost on waking and the run could not finish.
The run must end as if nothing happened: exit 0, every iteration once (marker files), no peer
lost, and each watcher saying in its log that it saw its own pause.
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


def _state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-o", "%t", "-j", job], capture_output=True, text=True)
    return out.stdout.strip()


def test_a_suspended_and_resumed_job_loses_nothing(tmp_path: Path) -> None:
    jobs = [{"name": "sweep", "iteration": {"stop": SWEEP},
             "execution": {"script": mark("0.$(( (${it} * 7) % 9 + 1 ))")}}]
    write_requests(tmp_path / "jobs.json", [{"request": "submit", "jobs": jobs},
                                            {"request": "control", "command": "finishAfterAllTasksDone"}])
    (tmp_path / "job.sh").write_text(f"#!/bin/bash\nexec {sys.executable} -m hpilot.governor run jobs.json --wd . "
                                     "--no-progress --slurm-partition-nodes 2 --partition-heartbeat 0.5\n")
    out = subprocess.run(["sbatch", "-N4", "--ntasks-per-node=1", "--time=5", f"--job-name=susp-{uuid.uuid4().hex[:8]}",
                          "-o", "out.txt", "job.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    m = re.search(r"Submitted batch job (\d+)", out.stdout)
    assert m, out.stdout
    job = m.group(1)
    marks = tmp_path / "marks"
    try:
        wait_for(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 4, 120, "some work done")
        subprocess.run(["scontrol", "suspend", job], check=True, timeout=30)
        assert _state(job) == "S"
        time.sleep(SUSPENDED)  # the suspension's length: a stimulus, not a wait for something
        subprocess.run(["scontrol", "resume", job], check=True, timeout=30)
        wait_for(lambda: _state(job) == "", 120, "the job to end")
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    said = (tmp_path / "out.txt").read_text()
    assert "Traceback" not in said
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    assert status["exit_status"] == 0, said
    assert status["iterations"]["succeeded"] == SWEEP
    Executions.read(tmp_path, {}).check({f"sweep:{i}" for i in range(SWEEP)}, set(), None)  # once each
    assert all(n == 1 for n in finished_in_journal(tmp_path).values())
    gov = (latest_run(tmp_path) / "service.log").read_text()
    parts = [p.read_text() for p in sorted((tmp_path / ".hpilot" / "partitions").glob("*/service.log"))]
    assert len(parts) == 2
    for text in [gov, *parts]:
        assert " lost" not in text and "silent for" not in text, text[-2000:]
    assert "this governor did not run for" in gov
    assert all("this manager did not run for" in t for t in parts)
