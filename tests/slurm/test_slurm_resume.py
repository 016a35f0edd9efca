"""Resume on the real Slurm cluster: the manager is killed inside one allocation, resumed in another.

The same property as the local kill tests: after the resume every task has run
to the end, and no task the manager had recorded as finished ran again.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from hpilot.governor.service import journal

from tests.conftest import latest_run, wait_for, write_requests
from tests.slurm.conftest import HPILOT, cancel, job_name, salloc

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

MARK = 'echo "${jname}" >> marks'
MARK_IT = 'echo "${jname}:${it}" >> marks'  # ${jname} is the job's name, as in QCG-PilotJob


def _requests() -> list:
    jobs = [
        {"name": "sweep", "iteration": {"stop": 24}, "execution": {"script": f"sleep 0.1; {MARK_IT}"}},
        {"name": "after", "execution": {"script": MARK}, "dependencies": {"after": ["sweep"]}},
    ]
    return [{"request": "submit", "jobs": jobs}, {"request": "control", "command": "finishAfterAllTasksDone"}]


def _recorded(wd: Path) -> set:
    rep = journal.read(str(latest_run(wd) / "journal"))
    return {(f"{r[0]}:{r[1]}" if r[0] == "sweep" else r[0]) for r in journal.finished(rep.records)}


@pytest.mark.parametrize("mode", ["single", "governor"])
@pytest.mark.parametrize("seed", range(3))
def test_kill_the_manager_in_one_allocation_resume_in_another(tmp_path: Path, seed: int, mode: str) -> None:
    """In governor mode the governor is killed (its partition managers, srun steps of
    the same allocation, end with it) and the resume has another number of partitions."""
    write_requests(tmp_path / "jobs.json", _requests())
    name = job_name(tmp_path)
    partitions = ["--slurm-partition-nodes", "2"] if mode == "governor" else []
    cmd = ["salloc", "-N", "4", "--ntasks-per-node=1", "--time=5", f"--job-name={name}", *HPILOT, "run",
           "jobs.json", "--wd", str(tmp_path), *partitions]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (tmp_path / "marks").exists(), 60, "the first tasks to finish")
        try:
            proc.wait(timeout=random.Random(seed).uniform(0.0, 0.6))
        except subprocess.TimeoutExpired:
            service = [p for p in os.listdir("/proc") if p.isdigit() and _is_service_of(int(p), proc.pid)]
            for pid in service:
                os.kill(int(pid), signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cancel(name)
    recorded = _recorded(tmp_path)
    at_kill = Counter((tmp_path / "marks").read_text().split())
    again = ["--slurm-partition-nodes", "1"] if mode == "governor" else []
    resumed = salloc(["resume", str(tmp_path), *again], tmp_path, per_node=1, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    marks = Counter((tmp_path / "marks").read_text().split())
    assert set(marks) == {f"sweep:{i}" for i in range(24)} | {"after"}
    assert all(marks[t] == at_kill[t] for t in recorded), {t: (at_kill[t], marks[t]) for t in recorded}


def _is_service_of(pid: int, salloc_pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == salloc_pid and b"hpilot.governor" in cmdline
