"""A full disk stops the run resumably: the working directory is a small tmpfs (we are root on
the test machines; elsewhere the test skips with the reason), the tasks' output fills it.

hpilot must say which file it could not write and why, with no traceback and exit status 75
(not 3, an internal error); ``final_status`` must be there and count honestly; and once
there is room again, the resume runs what was left, each iteration exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import latest_run, run_hpilot, write_requests
from tests.killing import Executions, finished_in_journal, mark

pytestmark = pytest.mark.integration

N = 60


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    wd = tmp_path / "wd"
    wd.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(wd)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        yield wd
    finally:
        if subprocess.run(["umount", str(wd)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(wd)], capture_output=True)


def test_a_full_disk_stops_the_run_resumably_then_the_resume_finishes(small_disk: Path) -> None:
    wd = small_disk
    chatty = "head -c 200000 /dev/zero | tr '\\0' x; echo; " + mark("0.1")  # 200 kB of output each
    write_requests(wd / "jobs.json", [{"request": "submit", "jobs": [
        {"name": "sweep", "iteration": {"stop": N}, "execution": {"script": chatty}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}])
    proc = run_hpilot(["run", "jobs.json", "--nodes", "2", "--no-progress"], cwd=wd, timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 75, said
    assert "Traceback" not in said and "internal error" not in said
    last = proc.stdout.strip().splitlines()[-1]
    assert "interrupted: cannot write " in last and ": No space left on device: " in last, last
    assert "iterations left to resume" in last
    status = json.loads((latest_run(wd) / "final_status").read_text())
    left = status["interrupted"]["left_to_resume"]
    assert status["exit_status"] == 75 and 0 < left < N
    assert status["iterations"]["succeeded"] + status["iterations"]["interrupted"] == N
    assert status["interrupted"]["reason"].startswith("interrupted: cannot write ")
    seen_done = set(finished_in_journal(wd))
    # room again (as after cleaning up), and the task output streamed no more: the resume finishes
    subprocess.run(["mount", "-o", "remount,size=64m", str(wd)], check=True)
    resumed = run_hpilot(["resume", ".", "--no-progress"], cwd=wd, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    Executions.read(wd, {}).check({f"sweep:{i}" for i in range(N)}, seen_done, None)
    final = json.loads((latest_run(wd) / "final_status").read_text())
    assert final["iterations"]["succeeded"] == N and final["interrupted"] is None


def test_a_journal_that_cannot_grow_stops_the_run_naming_it(wd: Path) -> None:
    """The journal is the file that fails (a file size limit here, a quota on a cluster): the run
    stops resumably saying so; the resume (without the limit) runs what was left."""
    import resource

    from tests.conftest import HPILOT

    write_requests(wd / "jobs.json", [{"request": "submit", "jobs": [
        {"name": "many", "iteration": {"stop": 3000}, "execution": {"exec": "/bin/true"}}]},
        {"request": "control", "command": "finishAfterAllTasksDone"}])

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    proc = subprocess.run(HPILOT + ["run", "jobs.json", "--nodes", "2", "--no-progress", "--task-output", "discard"],
                          cwd=wd, capture_output=True, text=True, timeout=120, preexec_fn=limited)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 75, said
    assert "Traceback" not in said
    journal = latest_run(wd) / "journal"
    assert f"interrupted: cannot write {journal}: File too large" in proc.stdout, said
    status = json.loads((latest_run(wd) / "final_status").read_text())
    assert status["exit_status"] == 75 and status["interrupted"]["left_to_resume"] > 0
    resumed = run_hpilot(["resume", ".", "--no-progress"], cwd=wd, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads((latest_run(wd) / "final_status").read_text())["iterations"]["succeeded"] == 3000
