"""The end of a pilot's life, locally: kill -9 at 20 moments of the manager, the governor, one
partition manager; SIGTERM; a full disk.  Counted by marker files (tests/killing.py).

After each: no process of the run is left a second after the kill, an iteration the journal
had as finished never runs again, every iteration ends (the resume runs what is left), and
``final_status`` counts honestly.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import psutil
import pytest

from tests.conftest import HPILOT, latest_run, run_hpilot, wait_for, write_requests
from tests.killing import (
    Executions,
    describe,
    finished_in_journal,
    journal_has,
    kill_time,
    mark,
    run_processes,
    tag_env,
)

pytestmark = pytest.mark.integration

SWEEP = 40
NAMES = {"after": "after:0"}  # a non-iterative job's marks name the job alone
EXPECTED = {f"sweep:{i}" for i in range(SWEEP)} | {f"each:{i}" for i in range(8)} | {"after:0"}


def _workload(wd: Path) -> None:
    jobs = [
        # 0.1 .. 0.9 s each, in a spread: kills land anywhere in a task's life
        {"name": "sweep", "iteration": {"stop": SWEEP},
         "execution": {"script": mark("0.$(( (${it} * 7) % 9 + 1 ))")}},
        {"name": "each", "iteration": {"stop": 8}, "execution": {"script": mark("0.2")},
         "dependencies": {"after": ["sweep:${it}"]}},
        {"name": "after", "execution": {"script": mark("0.1", it=False)}, "dependencies": {"after": ["sweep"]}},
    ]
    write_requests(wd / "jobs.json", [{"request": "submit", "jobs": jobs},
                                      {"request": "control", "command": "finishAfterAllTasksDone"}])


def _final_status(wd: Path) -> Dict[str, object]:
    data: Dict[str, object] = json.loads((latest_run(wd) / "final_status").read_text())
    return data


def _start(wd: Path, args: List[str], env: Dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(HPILOT + ["run", "jobs.json", "--no-progress", *args], cwd=wd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: journal_has(wd, b'"t":"submit"') or proc.poll() is not None, 60, "the run to start")
    return proc


def _kill_at(proc: subprocess.Popen, delay: float, pid: Optional[int] = None) -> Optional[float]:
    """SIGKILL ``pid`` (default: the run) ``delay`` seconds from now, unless the run ended first."""
    try:
        proc.wait(timeout=delay)
        return None
    except subprocess.TimeoutExpired:
        pass
    when = kill_time()
    psutil.Process(pid or proc.pid).kill()
    return when


def _nothing_left(tag: str, exclude: Optional[Set[int]] = None) -> None:
    left: List[int] = []

    def gone() -> bool:
        left[:] = run_processes(tag, exclude)
        return not left

    try:
        wait_for(gone, 1.0, "every process of the run to be gone")
    except AssertionError:
        raise AssertionError(f"left 1 s after the kill: {describe(left)}") from None


def _resume_and_check(wd: Path, killed_at: Optional[float], seen_done: Set[str]) -> int:
    resumed = run_hpilot(["resume", ".", "--no-progress"], cwd=wd, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr
    twice = Executions.read(wd, NAMES).check(EXPECTED, seen_done, killed_at)
    status = _final_status(wd)
    assert status["iterations"] == {"total": len(EXPECTED), "succeeded": len(EXPECTED), "failed": 0,  # type: ignore
                                    "canceled": 0, "interrupted": 0, "not_started": 0, "running": 0, "queued": 0}
    assert all(n == 1 for n in finished_in_journal(wd).values()), "an iteration was recorded finished twice"
    return twice


MODES: Dict[str, Tuple[str, ...]] = {
    "manager": ("--nodes", "4"),
    "governor": ("--nodes", "2,2", "--partition-nodes", "1"),
}


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_kill_9_of_the_manager_at_a_moment_then_resume(wd: Path, mode: str, seed: int) -> None:
    """The single manager, or the governor (its partition managers are its children): killed."""
    _workload(wd)
    env = tag_env()
    proc = _start(wd, list(MODES[mode]), env)
    killed_at = _kill_at(proc, random.Random(seed).uniform(0.0, 4.0))
    proc.wait(timeout=30)
    _nothing_left(env["HPILOT_TEST_TAG"])
    _resume_and_check(wd, killed_at, set(finished_in_journal(wd)))


@pytest.mark.parametrize("seed", range(20))
def test_kill_9_of_one_partition_manager_the_run_goes_on(wd: Path, seed: int) -> None:
    """Its tasks die with it (its guard); the governor re-runs what it held once they are known
    dead, on the other partition; the run ends with every iteration done once."""
    _workload(wd)
    env = tag_env()
    proc = _start(wd, ["--nodes", "2,2", "--partition-nodes", "1"], env)
    try:
        def doomed() -> Optional[psutil.Process]:
            for c in psutil.Process(proc.pid).children():
                if "--id" in c.cmdline() and c.cmdline()[c.cmdline().index("--id") + 1] == "p1":
                    return c
            return None

        wait_for(lambda: doomed() is not None, 30, "partition p1")
        p1 = doomed()
        assert p1 is not None
        try:
            proc.wait(timeout=random.Random(seed).uniform(0.0, 3.0))
            killed_at = None
            mine: Set[int] = set()
        except subprocess.TimeoutExpired:
            mine = {p.pid for p in p1.children(recursive=True)} | {p1.pid}
            killed_at = kill_time()
            p1.kill()
        if mine:
            def gone() -> bool:
                return not [p for p in mine if _alive(p)]

            wait_for(gone, 1.0, "the killed partition's processes to be gone")
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seen_done: Set[str] = set()  # the run went on: nothing it recorded ran again (checked by the journal)
    Executions.read(wd, NAMES).check(EXPECTED, seen_done, killed_at)
    status = _final_status(wd)
    assert status["exit_status"] == 0
    assert status["iterations"]["succeeded"] == len(EXPECTED)  # type: ignore[index]
    assert all(n == 1 for n in finished_in_journal(wd).values())
    _nothing_left(env["HPILOT_TEST_TAG"])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("mode", sorted(MODES))
def test_sigterm_stops_resumably_then_the_resume_runs_the_rest(wd: Path, mode: str, seed: int) -> None:
    """A SIGTERM to the run (scancel, a time limit): the stop is resumable and counted, and no
    iteration runs twice, except one caught by the stop's kill in its last instants: one
    that had written its last line but not yet exited (CI saw ``sweep:17`` do so; its kill
    cannot be told from one in the middle of its work).  One that had exited is its own end
    (CI saw such an end recorded INTERRUPTED, then run again: the kill now collects exits
    first, tests/unit/test_local_launcher.py)."""
    _workload(wd)
    env = tag_env()
    proc = _start(wd, list(MODES[mode]), env)
    with pytest.raises(subprocess.TimeoutExpired):  # the run lasts longer than this
        proc.wait(timeout=random.Random(seed).uniform(0.3, 3.0))
    stopped_at = kill_time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 75
    _nothing_left(env["HPILOT_TEST_TAG"])
    status = _final_status(wd)
    its = status["iterations"]
    left = len(EXPECTED) - its["succeeded"]  # type: ignore[index]
    assert left > 0 and its["interrupted"] == left and its["failed"] == 0  # type: ignore[index]
    assert status["interrupted"]["left_to_resume"] == left  # type: ignore[index]
    assert status["interrupted"]["message"] == f"interrupted by SIGTERM: {left} iterations left to resume"  # type: ignore
    seen_done = set(finished_in_journal(wd))
    assert len(seen_done) == its["succeeded"]  # type: ignore[index]
    plan = run_hpilot(["resume", "--dry-run", "--json", "."], cwd=wd)
    assert json.loads(plan.stdout)["to_run"] == left
    _resume_and_check(wd, stopped_at, seen_done)  # twice: only with a first end around the stop
