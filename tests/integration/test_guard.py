"""The guard (launcher/guard.py): no task outlives the process that started it, kill -9 included.

A real launcher runs in a child process; its tasks start processes of their own (in the
background, in a session of their own, one that ignores SIGTERM and SIGHUP).  The child is
killed with SIGKILL, so it can do nothing itself: every one of those processes must be gone
within a second, and a launcher's guard must never touch another launcher's tasks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import List

import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.integration

CHILD = r"""
import sys, time
from hpilot.launcher.local import LocalLauncher
from hpilot.launcher.core import LaunchRequest
from hpilot.launcher.api import TaskStarted
n, wd = int(sys.argv[1]), sys.argv[2]
script = ("sleep 60 & setsid sleep 61 & (trap '' TERM HUP; exec sleep 62) & "
          "echo $$ >> pids; sleep 63")
l = LocalLauncher(grace=0.2)
for i in range(n):
    l.launch(LaunchRequest(f"t{i}", ("/bin/bash", "-c", script), None, wd))
started = 0
while True:
    started += sum(isinstance(e, TaskStarted) for e in l.poll())
    if started == n:
        print("ready", flush=True)
        started = -1
    time.sleep(0.01)
"""


def _run_processes(tag: str) -> List[int]:
    """Pids whose environment carries this test's tag (the launcher, its guard, every task process)."""
    needle = f"HPILOT_TEST_TAG={tag}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    with open(f"/proc/{name}/stat", "rb") as s:
                        if s.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                            found.append(int(name))
        except OSError:
            continue
    return found


def _start(tmp_path: Path, tag: str, n: int = 3) -> subprocess.Popen:
    env = dict(os.environ, HPILOT_TEST_TAG=tag)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(n), str(tmp_path)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    wait_for(lambda: (tmp_path / "pids").exists() and len((tmp_path / "pids").read_text().split()) == n, 20,
             "every task's script to run")
    return proc


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.parametrize("n", [1, 20])
def test_kill_9_of_the_launcher_leaves_no_process_behind(tmp_path: Path, n: int) -> None:
    tag = uuid.uuid4().hex
    proc = _start(tmp_path, tag, n)
    try:
        # the launcher, its guard, and per task 4 sleeps (bash -c execs the last one)
        wait_for(lambda: len(_run_processes(tag)) >= 2 + 4 * n, 20, "every process to start")
    finally:
        _kill(proc)
    wait_for(lambda: not _run_processes(tag), 1.0, "the guard to kill every task process")


def test_the_guard_spares_the_tasks_of_another_launcher(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tag_a, tag_b = uuid.uuid4().hex, uuid.uuid4().hex
    a = _start(tmp_path / "a", tag_a)
    b = _start(tmp_path / "b", tag_b)
    try:
        wait_for(lambda: len(_run_processes(tag_b)) >= 2 + 4 * 3, 20, "b's processes")
        _kill(a)
        wait_for(lambda: not _run_processes(tag_a), 1.0, "a's guard to kill a's tasks")
        before = set(_run_processes(tag_b))
        time.sleep(0.2)  # give a's guard every chance to do harm
        assert set(_run_processes(tag_b)) == before
    finally:
        for p in (a, b):
            if p.poll() is None:
                _kill(p)
    wait_for(lambda: not _run_processes(tag_b), 1.0, "b's guard to kill b's tasks")


def test_a_killed_guard_is_replaced(tmp_path: Path) -> None:
    """Someone kills the guard: the launcher starts a new one at its next write, told about every task."""
    from hpilot.launcher.core import LaunchRequest
    from hpilot.launcher.local import LocalLauncher

    launcher = LocalLauncher(grace=0.2)
    try:
        launcher.launch(LaunchRequest("a", ("/bin/sleep", "30"), None, str(tmp_path)))
        launcher.poll()
        guard = launcher.guard
        assert guard is not None and guard.active
        first = guard.pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: guard._reap(), 10, "the guard to die")
        launcher.launch(LaunchRequest("b", ("/bin/sleep", "30"), None, str(tmp_path)))
        launcher.poll()
        guard.flush(force=True)  # the write fails: a new guard, told about a and b
        assert guard.active and guard.pid != first
        assert set(guard._live) == {c.pid for c in launcher._children.values()}
    finally:
        launcher.close()
