"""Shared test helpers: run the real ``hpilot`` command, write request files, poll."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

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


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    d = tmp_path / "wd"
    d.mkdir()
    return d
