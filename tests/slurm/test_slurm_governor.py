"""Governor mode in a real allocation of the local 4-node Slurm cluster: ``--slurm-partition-nodes 2``
starts one partition manager per 2 nodes with srun, each limited to its nodes; W1 (2000
iterations of /bin/true) all SUCCEED, spread over both partitions, each task on its partition's nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import latest_run, submit, write_requests
from tests.slurm.conftest import salloc

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def test_w1_over_two_slurm_partitions(tmp_path: Path) -> None:
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "w1", "iteration": {"stop": 2000}, "execution": {"exec": "/bin/true"}},
        {"name": "probe", "iteration": {"stop": 8}, "execution": {"script": "echo $SLURMD_NODENAME",
                                                                  "stdout": "probe.${it}"}}))
    p = salloc(["run", str(reqs), "--wd", str(tmp_path), "--slurm-partition-nodes", "2", "--report-format",
                "json"], tmp_path, timeout=110)
    assert p.returncode == 0, p.stdout + p.stderr
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    assert status["jobs"] == {"SUCCEED": 2} and status["iterations"]["succeeded"] == 2008, status
    parts = sorted((tmp_path / ".hpilot" / "partitions").iterdir())
    assert [d.name.split("-")[0] for d in parts] == ["p1", "p2"]
    report = {e["name"]: e for e in map(json.loads, (latest_run(tmp_path) / "jobs.report").read_text().splitlines())}
    assert report["w1"]["state"] == "SUCCEED"
    log = (latest_run(tmp_path) / "service.log").read_text()
    assert "partition p1 registered" in log and "partition p2 registered" in log
    # each partition's tasks ran on its own nodes only
    for d in parts:
        plog = (d / "service.log").read_text()
        assert "registered with" in plog
    ran = {(tmp_path / f"probe.{i}").read_text().strip() for i in range(8)}
    assert ran <= {"n1", "n2", "n3", "n4"} and len(ran) >= 2
