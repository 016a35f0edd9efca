"""Resume in governor mode after a kill -9 at 20 random moments each: of the governor alone, or of the
governor together with its partition managers. The resumed run may have another number of
partitions. Same property as the single-manager tests (tests/integration/test_resume.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path
from typing import List

import psutil
import pytest

from tests.conftest import HPILOT, run_hpilot, wait_for, write_requests
from tests.integration.test_resume import ALL_TASKS, _marks, _recorded_finished, _workload

pytestmark = pytest.mark.integration


def _partition_managers(governor_pid: int) -> List[psutil.Process]:
    try:
        return [p for p in psutil.Process(governor_pid).children(recursive=True)
                if "--parent" in " ".join(p.cmdline())]
    except psutil.Error:
        return []


@pytest.mark.parametrize("with_partitions", [False, True], ids=["governor", "governor+partitions"])
@pytest.mark.parametrize("seed", range(20))
def test_kill_governor_at_a_random_moment_then_resume(wd: Path, seed: int, with_partitions: bool) -> None:
    write_requests(wd / "jobs.json", _workload())
    cmd = HPILOT + ["run", "jobs.json", "--nodes", "2,2", "--partition-nodes", "1", "--partition-heartbeat", "0.5",
                    "--report-format", "json"]
    gov = subprocess.Popen(cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victims: List[psutil.Process] = []
    try:
        wait_for(lambda: (wd / ".hpilot" / "latest" / "journal").exists() or gov.poll() is not None, 30,
                 "the run to start")
        try:
            gov.wait(timeout=random.Random(seed).uniform(0.2, 1.5))
        except subprocess.TimeoutExpired:
            victims = _partition_managers(gov.pid) if with_partitions else []
            gov.send_signal(signal.SIGKILL)
            for p in victims:
                p.kill()
        gov.wait(timeout=30)
    finally:
        if gov.poll() is None:
            gov.kill()
            gov.wait()
    seen_done = _recorded_finished(wd)
    at_kill = _marks(wd)
    nodes = "2,2" if seed % 2 == 0 else "1,1,2"  # another number of partitions after the resume
    proc = run_hpilot(["resume", ".", "--nodes", nodes, "--partition-nodes", "1", "--partition-heartbeat", "0.5"],
                      cwd=wd, timeout=90)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 'bad' fails, by design
    marks = _marks(wd)
    assert set(marks) == ALL_TASKS, f"missing: {ALL_TASKS - set(marks)}"
    assert all(marks[t] == at_kill[t] for t in seen_done), {t: (at_kill[t], marks[t]) for t in seen_done}
    for p in victims:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    assert os.path.exists(wd / ".hpilot")
