"""Streamed task output in an allocation: node agents (one file per node) and governor mode
(partition managers started with srun, each with its own agents) write into the run dir,
and ``hpilot log`` reads it back after the allocation is gone; a failed task's last stderr
lines travel from the agent to the summary line and jobs.report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import latest_run, run_hpilot, submit, write_requests
from tests.slurm.conftest import salloc

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

SCRIPT = ("echo it ${it} on $(hostname) $HPILOT_NODE; "
          "if [ ${it} = 5 ]; then echo 'RuntimeError: node trouble' >&2; exit 4; fi")


def _check(tmp_path: Path, proc_stdout: str, iterations: int, srun: bool = False) -> None:
    """``srun``: each task is an srun step, whose own messages share the task's stderr."""
    run = latest_run(tmp_path)
    assert "first failure: sweep:5 exit code 4: RuntimeError: node trouble" in proc_stdout
    for it in range(iterations):
        log = run_hpilot(["log", f"sweep:{it}", "--run", str(run)], cwd=tmp_path)
        assert log.returncode == 0 and log.stdout.startswith(f"it {it} on "), log.stdout + log.stderr
    err = run_hpilot(["log", "sweep:5", "--stderr", "--run", str(run)], cwd=tmp_path)
    assert err.stdout == "RuntimeError: node trouble\n" or (srun and "RuntimeError: node trouble\n" in err.stdout)
    entries = {e["name"]: e for e in map(json.loads, (run / "jobs.report").read_text().splitlines())}
    (failure,) = entries["sweep"]["failures"]
    assert (failure["iteration"], failure["exit_code"]) == (5, 4)
    assert failure["stderr"] == "RuntimeError: node trouble" or (srun and failure["stderr"].endswith("node trouble"))


def test_agents_stream_their_tasks_output_one_file_per_node(tmp_path: Path) -> None:
    write_requests(tmp_path / "jobs.json", submit({"name": "sweep", "iteration": {"stop": 16},
                                                   "execution": {"script": SCRIPT}}))
    proc = salloc(["run", "jobs.json", "--wd", str(tmp_path), "--report-format", "json"], tmp_path, per_node=2)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = sorted(p.name for p in (latest_run(tmp_path) / "output").iterdir())
    assert 2 <= len(files) <= 4, files  # one per node that ran something, never one per task
    assert all(p.startswith("n") for p in files), files
    _check(tmp_path, proc.stdout, 16)
    # the agents on the nodes wrote them: each file names its node, and its tasks ran there
    for f in (latest_run(tmp_path) / "output").iterdir():
        node = f.name.split("-")[0]
        assert b" " + node.encode() + b"\n" in f.read_bytes()


def test_governor_mode_partition_managers_stream_into_the_governors_run_dir(tmp_path: Path) -> None:
    write_requests(tmp_path / "jobs.json", submit({"name": "sweep", "iteration": {"stop": 12},
                                                   "execution": {"script": SCRIPT}}))
    proc = salloc(["run", "jobs.json", "--wd", str(tmp_path), "--report-format", "json", "--slurm-partition-nodes",
                   "2"], tmp_path, per_node=2, timeout=150)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = sorted(p.name for p in (latest_run(tmp_path) / "output").iterdir())
    assert 2 <= len(files) <= 4, files
    _check(tmp_path, proc.stdout, 12)


def test_one_srun_per_task_streams_through_srun(tmp_path: Path) -> None:
    """--disable-nl: each task is its own srun step; srun forwards the task's output to the pipes."""
    write_requests(tmp_path / "jobs.json", submit({"name": "sweep", "iteration": {"stop": 8},
                                                   "execution": {"script": SCRIPT}}))
    proc = salloc(["run", "jobs.json", "--wd", str(tmp_path), "--report-format", "json", "--disable-nl"],
                  tmp_path, per_node=2, timeout=150)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = [p.name for p in (latest_run(tmp_path) / "output").iterdir()]
    assert len(files) == 1 and files[0].startswith("local-"), files  # one launcher: the service's
    _check(tmp_path, proc.stdout, 8, srun=True)
