"""Per-iteration dependencies ("a:${it}") and iterations canceled one by one ("job:it") survive a
kill -9 and a resume, in single and governor mode: each iteration hpilot saw finish runs once,
the canceled iteration never runs, and the jobs end as QCG-PilotJob would have them end."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Tuple

import pytest

from tests.conftest import HPILOT, latest_run, run_hpilot, wait_for, write_requests
from tests.integration.test_resume import _marks

pytestmark = pytest.mark.integration

MODES = {"single": ("--nodes", "2"), "governor": ("--nodes", "1,1", "--partition-nodes", "1")}


def _requests() -> list:
    mark = 'echo "${jname}:${it}" >> marks'
    return [
        {"request": "submit", "jobs": [
            {"name": "a", "iteration": {"stop": 4}, "execution": {"script": f"sleep 0.3; {mark}"}},
            {"name": "b", "iteration": {"stop": 4}, "dependencies": {"after": ["a:${it}"]},
             "execution": {"script": f"sleep 0.3; {mark}"}},
            {"name": "c", "iteration": {"stop": 4}, "dependencies": {"after": ["b:${it}"]},
             "execution": {"script": mark}},
        ]},
        {"request": "cancelJob", "jobNames": ["b:3"]},  # waits for a:3: canceled before it is ever sent
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]


@pytest.mark.parametrize("mode", list(MODES))
def test_iteration_dependencies_and_cancels_are_resumed(wd: Path, mode: str) -> None:
    flags: Tuple[str, ...] = MODES[mode]
    write_requests(wd / "jobs.json", _requests())
    run = subprocess.Popen(HPILOT + ["run", "jobs.json", *flags, "--report-format", "json"], cwd=wd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill -9 once the first iterations of b have run: a, b and c are each partly done
        wait_for(lambda: "b:0" in _marks(wd) or run.poll() is not None, 60, "b:0 to run")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    before = _marks(wd)
    proc = run_hpilot(["resume", ".", *flags], cwd=wd, timeout=120)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr  # b and c are FAILED (an iteration canceled)
    marks = _marks(wd)
    expected = {f"{j}:{i}" for j in "abc" for i in range(4)} - {"b:3", "c:3"}
    assert set(marks) == expected, (before, marks)
    assert marks["a:0"] == 1  # it finished (and was journaled) before b:0 could start: never again
    entries = {e["name"]: e for e in map(json.loads, (latest_run(wd) / "jobs.report").read_text().splitlines())}
    assert {n: e["state"] for n, e in entries.items()} == {"a": "SUCCEED", "b": "FAILED", "c": "FAILED"}
    assert entries["b"]["iterations"]["failed"] == 1 and entries["c"]["iterations"]["failed"] == 1
