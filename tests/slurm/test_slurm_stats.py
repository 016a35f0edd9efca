"""--enable-rt-stats and --enable-proc-stats over node agents: the records land in the run dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import latest_run, run_hpilot, submit, write_requests
from tests.slurm.conftest import salloc

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def test_agents_write_wrapper_records_for_every_task(tmp_path: Path) -> None:
    write_requests(tmp_path / "jobs.json", submit(
        {"name": "sweep", "iteration": {"stop": 12}, "execution": {"exec": "/bin/sleep", "args": ["0.2"]}}))
    proc = salloc(["run", "jobs.json", "--wd", str(tmp_path), "--enable-rt-stats", "--enable-proc-stats",
                   "--proc-stats-interval", "0.05"], tmp_path, per_node=1)
    assert proc.returncode == 0, proc.stderr
    run = latest_run(tmp_path)
    files = list((run / "rtstats").glob("wrapper-*.jsonl"))
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    tasks = {r.get("task") or r.get("task_id") for r in records}
    assert len(records) == 12 and len(tasks) == 12, records[:2]
    nodes = {f.name.split("-")[1] for f in (run / "rtstats").glob("wrapper-*.jsonl")}
    assert len(nodes) >= 2, f"records from one node only: {nodes}"  # the agents wrote them, on their nodes
    report = run_hpilot(["report", str(run), "launch-stats", "--json"], cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)
