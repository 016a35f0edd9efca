"""The end of a pilot's life on the real Slurm cluster: kill -9 of the manager (a single manager
with node agents, or a governor with partition managers started by srun) and of one node
agent, at 20 moments each; counted by marker files (tests/killing.py).

The runs share one allocation per test module (hpilot sees the allocation's variables, as
``salloc``'s shell would give them), so a kill and its resume take seconds: the resume runs
in the same allocation, where it must also find and kill what the dead run left on the
allocation's nodes.  A resume in a second allocation, after ``sbatch --time=1`` or a
``scancel``, is test_slurm_campaign.py's.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import psutil
import pytest

from tests.conftest import latest_run, wait_for, write_requests
from tests.killing import Executions, describe, finished_in_journal, journal_has, kill_time, mark, run_processes
from tests.slurm.conftest import HPILOT

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

SWEEP = 24
NAMES = {"after": "after:0"}
EXPECTED = {f"sweep:{i}" for i in range(SWEEP)} | {"after:0"}


@pytest.fixture(scope="module")
def allocation() -> Iterator[Dict[str, str]]:
    """4 nodes, one CPU each, for the module: the environment a process inside it has."""
    name = f"hpilot-kill-{os.getpid()}"
    out = subprocess.run(["salloc", "-N4", "--ntasks-per-node=1", "--time=20", f"--job-name={name}", "--no-shell"],
                         capture_output=True, text=True, timeout=300)
    m = re.search(r"Granted job allocation (\d+)", out.stderr)
    assert m, out.stderr
    job = m.group(1)
    try:
        info = subprocess.run(["scontrol", "show", "-o", "job", job], capture_output=True, text=True).stdout
        nodes = re.search(r"\bNodeList=(\S+)", info)
        assert nodes, info
        env = dict(os.environ, SLURM_JOB_ID=job, SLURM_JOBID=job, SLURM_JOB_NODELIST=nodes.group(1),
                   SLURM_NODELIST=nodes.group(1), SLURM_JOB_CPUS_PER_NODE="1(x4)", SLURM_JOB_NUM_NODES="4",
                   SLURM_NNODES="4", SLURM_JOB_NAME=name)
        yield env
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=60)


def _workload(wd: Path) -> None:
    jobs = [{"name": "sweep", "iteration": {"stop": SWEEP},
             "execution": {"script": mark("0.$(( (${it} * 7) % 9 + 1 ))")}},
            {"name": "after", "execution": {"script": mark("0.1", it=False)}, "dependencies": {"after": ["sweep"]}}]
    write_requests(wd / "jobs.json", [{"request": "submit", "jobs": jobs},
                                      {"request": "control", "command": "finishAfterAllTasksDone"}])


def _start(wd: Path, env: Dict[str, str], args: List[str]) -> subprocess.Popen:
    proc = subprocess.Popen(HPILOT + ["run", "jobs.json", "--wd", str(wd), "--no-progress", *args], cwd=wd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: journal_has(wd, b"S ") or proc.poll() is not None, 60, "the first task to start")
    return proc


def _nothing_left(tag: str, pids: Optional[Set[int]] = None) -> None:
    left: List[int] = []

    def gone() -> bool:
        left[:] = [p for p in (pids if pids is not None else run_processes(tag)) if _alive(p)]
        return not left

    try:
        wait_for(gone, 1.0, "every process of the run to be gone")
    except AssertionError:
        raise AssertionError(f"left 1 s after the kill: {describe(left)}") from None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _final(wd: Path) -> Dict[str, object]:
    data: Dict[str, object] = json.loads((latest_run(wd) / "final_status").read_text())
    return data


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("mode", ["single", "governor"])
def test_kill_9_of_the_manager_then_resume_in_the_allocation(tmp_path: Path, allocation: Dict[str, str],
                                                             mode: str, seed: int) -> None:
    _workload(tmp_path)
    env = dict(allocation, HPILOT_TEST_TAG=f"{os.getpid()}-{mode}-{seed}")
    args = ["--slurm-partition-nodes", "2"] if mode == "governor" else []
    proc = _start(tmp_path, env, args)
    killed_at = None
    try:
        proc.wait(timeout=random.Random(seed).uniform(0.0, 3.0))
    except subprocess.TimeoutExpired:
        killed_at = kill_time()
        proc.kill()
    proc.wait(timeout=30)
    if killed_at is not None:
        _nothing_left(env["HPILOT_TEST_TAG"])
    seen_done = set(finished_in_journal(tmp_path))
    resumed = subprocess.run(HPILOT + ["resume", str(tmp_path), "--no-progress", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr
    Executions.read(tmp_path, NAMES).check(EXPECTED, seen_done, killed_at)
    its = _final(tmp_path)["iterations"]
    assert its["succeeded"] == len(EXPECTED) and its["total"] == len(EXPECTED)  # type: ignore[index]
    assert all(n == 1 for n in finished_in_journal(tmp_path).values())


@pytest.mark.parametrize("seed", range(20))
def test_kill_9_of_one_agent_the_run_goes_on(tmp_path: Path, allocation: Dict[str, str], seed: int) -> None:
    """Its tasks die with it (its guard); what it ran runs again elsewhere once its node's tasks
    are surely dead; the run ends with every iteration done once."""
    _workload(tmp_path)
    env = dict(allocation, HPILOT_TEST_TAG=f"{os.getpid()}-agent-{seed}")
    proc = _start(tmp_path, env, [])
    killed_at = None
    try:
        def agent() -> Optional[psutil.Process]:
            for pid in run_processes(env["HPILOT_TEST_TAG"]):
                try:
                    cmd = psutil.Process(pid).cmdline()
                except psutil.NoSuchProcess:
                    continue
                if "hpilot.launcher.agent" in cmd and cmd[cmd.index("--node") + 1] == "n3":
                    return psutil.Process(pid)
            return None

        wait_for(lambda: agent() is not None, 30, "the agent of n3")
        victim = agent()
        assert victim is not None
        try:
            proc.wait(timeout=random.Random(seed).uniform(0.0, 3.0))
        except subprocess.TimeoutExpired:
            mine = {p.pid for p in victim.children(recursive=True)} | {victim.pid}
            killed_at = kill_time()
            victim.kill()
            _nothing_left("", mine)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    Executions.read(tmp_path, NAMES).check(EXPECTED, set(), killed_at)
    status = _final(tmp_path)
    assert status["exit_status"] == 0
    assert status["iterations"]["succeeded"] == len(EXPECTED)  # type: ignore[index]
    assert all(n == 1 for n in finished_in_journal(tmp_path).values())
