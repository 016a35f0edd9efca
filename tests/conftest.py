"""Shared test helpers: run the real ``hpilot`` command, write request files, poll.

Also the pure tiers: every test in tests/unit not marked ``shell`` is ``core`` (``pytest -m
core``, the fast tier) or, when it is a hypothesis property test, ``fuzz``.  Such a test feeds
events to a pure core or calls a pure function, so it may not start a process, open a socket
(plain or ZeroMQ) or start a thread: doing so fails the test, with the reason.  A unit test of
an I/O shell (a launcher, a socket loop) is marked ``shell``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
import zmq

HPILOT = [sys.executable, "-m", "hpilot.governor"]


def write_requests(path: Path, requests: List[Dict[str, Any]]) -> Path:
    path.write_text(json.dumps(requests, indent=1))
    return path


def submit(*jobs: Dict[str, Any], finish: bool = True) -> List[Dict[str, Any]]:
    """A request list: one submit of ``jobs`` (+ finishAfterAllTasksDone)."""
    reqs: List[Dict[str, Any]] = [{"request": "submit", "jobs": list(jobs)}]
    if finish:
        reqs.append({"request": "control", "command": "finishAfterAllTasksDone"})
    return reqs


def run_hpilot(args: List[str], cwd: Path, timeout: float = 60, env: Optional[Dict[str, str]] = None
               ) -> subprocess.CompletedProcess:
    """Run the real command line; the process is always reaped (timeout kills it)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(HPILOT + args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def latest_run(wd: Path) -> Path:
    return (wd / ".hpilot" / "latest").resolve()


def report_entries(wd: Path) -> Dict[str, Dict[str, Any]]:
    """jobs.report of the latest run, when written with --report-format json."""
    lines = (latest_run(wd) / "jobs.report").read_text().splitlines()
    return {e["name"]: e for e in map(json.loads, lines)}


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll with a deadline (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def wait_for_progress(count: Callable[[], int], target: int, stall: float = 30.0, what: str = "work",
                      interval: float = 0.2) -> None:
    """Poll ``count()`` until it reaches ``target``, failing only when it stops growing for
    ``stall`` seconds: for work whose total time depends on the machine's load (thousands of
    tasks), where any fixed deadline is either too short on a loaded machine or hides a hang.
    The interval is long enough that the polling itself does not slow the service down."""
    best, since = -1, time.monotonic()
    while True:
        n = count()
        if n >= target:
            return
        if n > best:
            best, since = n, time.monotonic()
        elif time.monotonic() - since > stall:
            raise AssertionError(f"{what}: stuck at {n} of {target} for {stall}s")
        time.sleep(interval)


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    d = tmp_path / "wd"
    d.mkdir()
    return d


# ---- the pure tiers: core and fuzz ----

_UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """A test in tests/unit not marked ``shell`` (real processes/sockets) is pure: ``fuzz`` when it
    is a hypothesis property test (hundreds of generated cases each), else ``core``."""
    for item in items:
        if _UNIT not in item.path.parents or item.get_closest_marker("shell") is not None:
            continue
        property_based = getattr(getattr(item, "obj", None), "is_hypothesis_test", False)
        item.add_marker(pytest.mark.fuzz if property_based else pytest.mark.core)


_PURE_FORBIDS = (
    (subprocess.Popen, "_execute_child", "started a process"),
    (os, "fork", "forked"),
    (os, "posix_spawn", "started a process"),
    (os, "posix_spawnp", "started a process"),
    (socket.socket, "__init__", "opened a socket"),
    (zmq.Context, "socket", "opened a ZeroMQ socket"),
    (threading.Thread, "start", "started a thread"),
)


@pytest.fixture(autouse=True)
def _pure_tests_start_nothing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``core`` or ``fuzz`` test that starts a process, a socket or a thread fails at once and says which."""
    if request.node.get_closest_marker("core") is None and request.node.get_closest_marker("fuzz") is None:
        return
    for owner, name, what in _PURE_FORBIDS:
        if not hasattr(owner, name):
            continue

        def refuse(*_a: Any, _what: str = what, **_k: Any) -> Any:
            raise AssertionError(f"a pure unit test {_what} (tests/conftest.py): feed the core events "
                                 "instead, or mark the test shell")

        monkeypatch.setattr(owner, name, refuse)
