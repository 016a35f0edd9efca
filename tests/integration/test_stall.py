"""A run that stops running for a while, and a run that loses every partition.

A stall: every process of the run stopped (SIGSTOP) for longer than the heartbeat watch allows,
then continued, as a machine that stalls or ``scontrol suspend`` / ``resume`` do (Slurm stops
every process of the job).  No peer could be heard meanwhile, so no peer may be declared lost for
it (launcher/vigil.py).  CI saw the governor of this very workload wake after such a stall, declare
both of its partitions lost, and wait forever.  The order of waking is the test's: the governor
first (it must not lose its partitions), or the partition managers first (they must not give up
their governor); the other one is continued once the first has logged what it made of the pause.

A partition manager that stops alone (hung) while the governor runs is silent, and lost: the
vigil must not excuse that.

Every partition lost: the run cannot go on, so it stops resumably at once (exit 75, the reason
names each partition), instead of waiting for the allocation's end; the resume runs the rest.
Counted by marker files (tests/killing.py), as in test_kill.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Set

import psutil
import pytest

from tests.conftest import latest_run, run_hpilot, wait_for
from tests.integration.test_kill import EXPECTED, NAMES, _final_status, _nothing_left, _start, _workload
from tests.killing import (
    BOUND,
    UNSEEN,
    Executions,
    finished_in_journal,
    journal_has,
    kill_time,
    mark,
    run_processes,
    tag_env,
)

pytestmark = pytest.mark.integration

GOVERNOR = ["--nodes", "2,2", "--partition-nodes", "1", "--partition-heartbeat", "0.5"]  # lost after 3 s
STALL = 4.5  # seconds every process of the run is stopped: longer than 6 heartbeats


def _signal(pids: List[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _partition_logs(wd: Path) -> List[Path]:
    return sorted((wd / ".hpilot" / "partitions").glob("*/service.log"))


def _start_registered(wd: Path, env: Dict[str, str]) -> subprocess.Popen:
    """A governor run whose two partitions have both registered (CI once stopped a run while one
    was still starting: it never got to its loop, so it had no pause to see, and the other one was
    lost with the governor that the test kept stopped)."""
    proc = _start(wd, GOVERNOR, env)
    wait_for(lambda: _logged([latest_run(wd) / "service.log"], "every partition registered") or proc.poll() is not None,
             60, "both partitions to register")
    assert proc.poll() is None
    return proc


def _spawning(managers: List[int]) -> List[int]:
    """The children of ``managers`` that are still copies of them: between vfork and exec."""
    out = []
    for pid in managers:
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(pid)
            out += [c.pid for c in parent.children() if c.cmdline() == parent.cmdline()]
    return out


def _logged(paths: List[Path], *needles: str) -> bool:
    texts = [p.read_text(errors="replace") if p.exists() else "" for p in paths]
    return bool(texts) and all(any(n in t for n in needles) for t in texts)


def _with_long(wd: Path) -> Set[str]:
    """test_kill's workload, and ``long``: two tasks of 6 sleeps of 0.5 s with a wall time of
    6 s, started first, so the stall (4.5 s) comes in their middle.  (Steps: a stopped
    ``sleep`` ends when it is continued if its time has passed, so one long sleep would hide
    the stall.)  The stall is not their wall time: the partition managers move it on by the
    pause they saw; without that they are killed, about 7 s into their 6 s."""
    _workload(wd)
    requests = json.loads((wd / "jobs.json").read_text())
    steps = "0.5; sleep 0.5; sleep 0.5; sleep 0.5; sleep 0.5; sleep 0.5"
    long = {"name": "long", "iteration": {"stop": 2}, "resources": {"wt": "6s"}, "execution": {"script": mark(steps)}}
    requests[0]["jobs"].insert(0, long)
    (wd / "jobs.json").write_text(json.dumps(requests))
    return EXPECTED | {"long:0", "long:1"}


@pytest.mark.parametrize("first", ["governor", "partitions"])
def test_a_stall_of_the_whole_run_loses_nothing(wd: Path, first: str) -> None:
    expected = _with_long(wd)
    env = tag_env()
    tag = env["HPILOT_TEST_TAG"]
    proc = _start_registered(wd, env)
    try:
        wait_for(lambda: journal_has(wd, b'"t":"started"') or proc.poll() is not None, 30, "tasks to start")
        assert proc.poll() is None
        stopped: Set[int] = set()
        for _ in range(2):  # twice: what started while the first pass went round is stopped too
            more = [p for p in run_processes(tag) if p not in stopped]
            _signal(more, signal.SIGSTOP)
            stopped |= set(more)
        partitions = [c.pid for c in psutil.Process(proc.pid).children() if "--id" in c.cmdline()]
        assert len(partitions) == 2
        # the stall: a stimulus of a set length, not a wait for something
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=STALL)
        gov_log = [latest_run(wd) / "service.log"]
        if first == "governor":
            _signal([proc.pid], signal.SIGCONT)
            # it tells its own pause from its partitions' silence, or (the bug) declares them lost
            wait_for(lambda: _logged(gov_log, "this governor did not run for", "lost: silent"), 30,
                     "the governor to see its pause")
        else:
            # with each manager, a task it was spawning: posix_spawn's vfork child, stopped before its
            # exec, holds its parent (state D) until it runs again, as Slurm's resume of a whole job does
            _signal(partitions + _spawning(partitions), signal.SIGCONT)
            wait_for(lambda: _logged(_partition_logs(wd), "this manager did not run for", "the governor is silent"),
                     30, "the partition managers to see their pause")
        _signal(sorted(stopped), signal.SIGCONT)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            _signal(run_processes(tag), signal.SIGCONT)
            proc.kill()
            proc.wait()
    logs = "".join(p.read_text() for p in [latest_run(wd) / "service.log", *_partition_logs(wd)])
    assert "lost" not in logs and "silent" not in logs, logs[-3000:]
    Executions.read(wd, NAMES).check(expected, set(), None)
    assert all(n == 1 for n in finished_in_journal(wd).values())
    assert _final_status(wd)["iterations"]["succeeded"] == len(expected)  # type: ignore[index]
    _nothing_left(tag)


@pytest.mark.parametrize("seed", range(4))
def test_every_partition_killed_the_run_stops_resumably_then_the_resume_runs_the_rest(wd: Path, seed: int) -> None:
    _workload(wd)
    env = tag_env()
    proc = _start_registered(wd, env)
    killed_at = None
    try:
        wait_for(lambda: len([c for c in psutil.Process(proc.pid).children() if "--id" in c.cmdline()]) == 2, 30,
                 "both partition managers")
        partitions = [c for c in psutil.Process(proc.pid).children() if "--id" in c.cmdline()]
        try:
            proc.wait(timeout=random.Random(seed).uniform(0.5, 2.5))
        except subprocess.TimeoutExpired:
            killed_at = kill_time()
            for p in partitions:
                p.kill()
        assert killed_at is not None, "the run ended before the kill"
        assert proc.wait(timeout=30) == 75  # not a wait for the allocation's end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _nothing_left(env["HPILOT_TEST_TAG"])
    status = _final_status(wd)
    left = status["interrupted"]["left_to_resume"]  # type: ignore[index]
    assert left > 0
    reason = str(status["reason"])
    assert reason.startswith("interrupted: every partition is gone (p1: its process exited"), reason
    assert "; p2: its process exited" in reason, reason
    seen_done = set(finished_in_journal(wd))
    resumed = run_hpilot(["resume", ".", "--no-progress"], cwd=wd, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    Executions.read(wd, NAMES).check(EXPECTED, seen_done, killed_at)
    assert _final_status(wd)["iterations"]["succeeded"] == len(EXPECTED)  # type: ignore[index]
    assert all(n == 1 for n in finished_in_journal(wd).values())


def _logged_at(path: Path, needle: str) -> float:
    """When a line of a service.log that holds ``needle`` was written (its local-time stamp)."""
    import datetime

    for line in path.read_text().splitlines():
        if needle in line:
            return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise AssertionError(f"no {needle!r} in {path}")


def test_a_hung_partition_manager_is_lost_and_the_run_goes_on(wd: Path) -> None:
    """The other side of the vigil: a partition manager that stops (SIGSTOP: hung, its node
    stalled) while the governor runs is silent, and is lost after 6 heartbeats (3 s); the governor
    kills it, its guard kills its tasks, and what it held runs again on the other partition.  An
    iteration may run twice only if its first run ended while the manager was stopped (nobody
    could report that end, nor one in the second before) or within the guard's bound after the
    governor's kill."""
    _workload(wd)
    env = tag_env()
    proc = _start_registered(wd, env)
    try:
        wait_for(lambda: journal_has(wd, b'"t":"started"') or proc.poll() is not None, 30, "tasks to start")
        (p1,) = [c for c in psutil.Process(proc.pid).children() if "--id" in c.cmdline() and "p1" in c.cmdline()]
        stopped_at = kill_time()
        p1.suspend()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in psutil.process_iter():  # a stopped manager cannot see its governor gone: SIGKILL it
            with contextlib.suppress(psutil.Error):
                if p.status() == psutil.STATUS_STOPPED and env["HPILOT_TEST_TAG"] in p.environ().get(
                        "HPILOT_TEST_TAG", ""):
                    p.kill()
    log = latest_run(wd) / "service.log"
    lost_at = _logged_at(log, "partition p1 lost: silent for")
    # 6 beats of 0.5 s from its last frame (sent at most a beat before the stop), checked once a beat
    assert 2.4 <= lost_at - stopped_at <= 6.0, lost_at - stopped_at
    ends = Executions.read(wd, NAMES).ends
    assert set(ends) == EXPECTED, sorted(EXPECTED ^ set(ends))[:10]
    for task, at in ends.items():
        assert len(at) <= 2, f"{task} ran {len(at)} times"
        if len(at) == 2:
            first = at[0] - stopped_at  # an end in the second before the stop may not have been reported yet
            assert stopped_at - UNSEEN <= at[0] <= lost_at + BOUND, f"{task} ran twice, its first end {first:+.3f}s " \
                "from the stop"
    assert all(n == 1 for n in finished_in_journal(wd).values())
    assert _final_status(wd)["iterations"]["succeeded"] == len(EXPECTED)  # type: ignore[index]
    _nothing_left(env["HPILOT_TEST_TAG"])
