"""The README's campaign script, run as it is: the first allocation hits its time limit
(``sbatch --time=1``), hpilot stops before it and the script submits the next allocation,
which finishes the work; and a ``scancel`` mid-run, then a resume in a second allocation.
Every iteration ends exactly once (marker files, tests/killing.py): nothing was killed
by surprise, so there is no instant in which an end could go unseen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import List, Set

import pytest

from tests.conftest import latest_run, wait_for, write_requests
from tests.killing import Executions, finished_in_journal, mark
from tests.slurm.conftest import HPILOT

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- tests/slurm/test_slurm_campaign.py runs this script as it is -->"


def campaign_script() -> str:
    text = README.read_text()
    after = text[text.index(MARKER) + len(MARKER):]
    m = re.search(r"```bash\n(.*?)```", after, re.S)
    assert m, "the README's campaign script"
    return m.group(1)


def _env() -> dict:
    """hpilot on PATH in every allocation (as `source ~/hpilot-venv/bin/activate` would)."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def _jobs(wd: Path, first: str) -> List[str]:
    """The chain of jobs: the first, then each one a job's output says it submitted."""
    chain, seen = [first], {first}
    while True:
        out = wd / f"slurm-{chain[-1]}.out"
        nxt = re.findall(r"Submitted batch job (\d+)", out.read_text()) if out.exists() else []
        nxt = [j for j in nxt if j not in seen]
        if not nxt:
            return chain
        chain.append(nxt[0])
        seen.add(nxt[0])


def _running(jobs: List[str]) -> bool:
    out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(jobs)], capture_output=True, text=True)
    return bool(set(out.stdout.split()) & set(jobs))


def _sbatch(wd: Path, *args: str) -> str:
    out = subprocess.run(["sbatch", *args, "campaign.sh"], cwd=wd, capture_output=True, text=True, env=_env(),
                         timeout=60)
    assert out.returncode == 0, out.stderr
    m = re.search(r"Submitted batch job (\d+)", out.stdout)
    assert m, out.stdout
    return m.group(1)


def _prepare(wd: Path, n: int) -> Set[str]:
    (wd / "campaign.sh").write_text(campaign_script())
    jobs = [{"name": "sweep", "iteration": {"stop": n}, "resources": {"wt": "20s"},
             "execution": {"script": mark("2")}}]
    write_requests(wd / "jobs.json", [{"request": "submit", "jobs": jobs},
                                      {"request": "control", "command": "finishAfterAllTasksDone"}])
    return {f"sweep:{i}" for i in range(n)}


def _interrupts(wd: Path) -> List[str]:
    from hpilot.governor.service import journal

    return [r["reason"] for k, r in journal.read(str(latest_run(wd) / "journal")).records
            if k == "J" and r.get("t") == "interrupt"]


def test_the_campaign_script_carries_on_after_the_time_limit(tmp_path: Path) -> None:
    expected = _prepare(tmp_path, 100)  # 100 x 2 s on 4 cores: more than a minute's work
    name = f"campaign-{uuid.uuid4().hex[:8]}"
    first = _sbatch(tmp_path, "--time=1", f"--job-name={name}")
    try:
        wait_for(lambda: not _running(_jobs(tmp_path, first)) and len(_jobs(tmp_path, first)) > 1, 400,
                 "the campaign's allocations to end")
    finally:
        subprocess.run(["scancel", *_jobs(tmp_path, first)], capture_output=True)
    chain = _jobs(tmp_path, first)
    assert len(chain) == 2, chain  # the time limit, then one more allocation finishes it
    said = (tmp_path / f"slurm-{first}.out").read_text()
    # (a task whose wt cannot end before the stop is not started: it may stop as soon as only those are left)
    assert re.search(r"interrupted before the allocation's end \(\d\d:\d\d:\d\d; --stop-before 6s\)[^;]*: "
                     r"\d+ iterations left to resume", said), said
    assert "Traceback" not in said
    assert [r.startswith("interrupted before the allocation's end") for r in _interrupts(tmp_path)] == [True]
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    assert status["exit_status"] == 0 and status["iterations"]["succeeded"] == len(expected)
    Executions.read(tmp_path, {}).check(expected, set(), None)  # no kill: exactly once each
    assert all(n == 1 for n in finished_in_journal(tmp_path).values())


def test_scancel_stops_resumably_and_a_second_allocation_finishes(tmp_path: Path) -> None:
    expected = _prepare(tmp_path, 40)
    name = f"campaign-{uuid.uuid4().hex[:8]}"
    job = _sbatch(tmp_path, "--time=5", f"--job-name={name}")
    try:
        wait_for(lambda: (tmp_path / "marks").exists() and len((tmp_path / "marks").read_text().split("\n")) > 8,
                 120, "some work done")
        subprocess.run(["scancel", job], check=True, timeout=30)
        wait_for(lambda: not _running([job]), 60, "the job to end")
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    assert _jobs(tmp_path, job) == [job], "scancel ends the campaign: the script does not go on"
    wait_for(lambda: (latest_run(tmp_path) / "final_status").exists(), 30, "final_status")
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    assert status["interrupted"] is not None and status["interrupted"]["reason"] == "interrupted by SIGTERM", status
    left = status["interrupted"]["left_to_resume"]
    assert left == len(expected) - status["iterations"]["succeeded"] > 0
    assert status["exit_status"] == 75
    seen_done = set(finished_in_journal(tmp_path))
    resumed = subprocess.run(["salloc", "-N4", "--ntasks-per-node=1", "--time=5", f"--job-name={name}-2", *HPILOT,
                              "resume", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    Executions.read(tmp_path, {}).check(expected, seen_done, None)
    assert json.loads((latest_run(tmp_path) / "final_status").read_text())["iterations"]["succeeded"] == len(expected)
