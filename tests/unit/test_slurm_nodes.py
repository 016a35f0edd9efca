"""A node whose agent died takes no more work; one that joins late does; bad Slurm input on the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from hpilot.partition.core import NodeChanged
from hpilot.partition.messages import IterationsDropped, NodeStatus
from hpilot.partition.resources import local_resources

from tests.conftest import run_hpilot, submit, write_requests
from tests.unit.test_partition_core import Driver, iterative, size, spec


def test_lost_node_takes_no_more_work_and_comes_back() -> None:
    d = Driver(local_resources("a:2,b:2"))
    s, its = iterative("j", 6)
    d.work(s, its)
    first = d.schedule()
    assert [r.node for r in first] == ["a", "a", "b", "b"]
    # the governor is told (resources, status and service.log show why)
    assert d.feed(NodeChanged("b", False, "agent died", 1.0)) == [NodeStatus("b", False, "agent died", 1.0)]
    for r in first:  # the lost tasks end (reported by the pool), the cores of b stay out
        d.end(r.task_id, 0 if r.node == "a" else -1, None if r.node == "a" else "node b lost")
    second = d.schedule()
    assert [r.node for r in second] == ["a", "a"]
    d.feed(NodeChanged("b", True, "its agent greeted", 2.0))
    for r in second:
        d.end(r.task_id)
    assert d.core.allocator.free_cores == 4


def test_work_that_no_longer_fits_fails_with_the_reason() -> None:
    d2 = Driver(local_resources("a:2,b:2"))
    d2.work(spec("blocker", cores=size(4)), [0])
    d2.schedule()
    d2.work(spec("both", nodes=size(2)), [0])
    status, *out = d2.feed(NodeChanged("a", False, "its agent died", 1.0))
    assert status == NodeStatus("a", False, "its agent died", 1.0)
    assert len(out) == 1 and isinstance(out[0], IterationsDropped)
    assert out[0].reason.startswith("resources: needs 2 node(s)") and "node a lost: its agent died" in out[0].reason


@pytest.mark.shell
def test_bad_slurm_input_is_a_clear_error(wd: Path) -> None:
    reqs = write_requests(wd / "r.json", submit({"name": "x", "execution": {"exec": "/bin/true"}}))
    env = {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n[1-", "SLURM_JOB_CPUS_PER_NODE": "2"}
    p = run_hpilot(["run", str(reqs)], wd, env=env)
    assert p.returncode == 2 and "SLURM_JOB_NODELIST='n[1-': '[' without ']'" in p.stderr
    assert "Traceback" not in p.stderr
    env = {"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_JOB_CPUS_PER_NODE": "2(x2"}
    p = run_hpilot(["run", str(reqs)], wd, env=env)
    assert p.returncode == 2 and "SLURM_JOB_CPUS_PER_NODE='2(x2'" in p.stderr
    (wd / "res.txt").write_text("JobId=1 NodeList=n1\n")
    p = run_hpilot(["run", str(reqs), "--slurm-resources-file", str(wd / "res.txt")], wd)
    assert p.returncode == 2 and "--slurm-resources-file" in p.stderr and "no 'Nodes=... CPU_IDs=...'" in p.stderr
    p = run_hpilot(["run", str(reqs), "--slurm-resources-file", str(wd / "nope")], wd)
    assert p.returncode == 2 and "cannot read" in p.stderr
    p = run_hpilot(["run", str(reqs), "--resources", "slurm"], wd)
    assert p.returncode == 2 and "not inside a Slurm allocation" in p.stderr
    # --resources local inside an allocation ignores it
    p = run_hpilot(["run", str(reqs), "--resources", "local"], wd, env=env)
    assert p.returncode == 0, p.stderr


@pytest.mark.shell
def test_mpi_models_refused_outside_an_allocation(wd: Path) -> None:
    reqs = write_requests(wd / "r.json", submit({"name": "m", "execution": {"exec": "/bin/true",
                                                                            "model": "openmpi"}}))
    p = run_hpilot(["run", str(reqs), "--resources", "local"], wd)
    assert p.returncode == 2 and "the MPI models need a Slurm allocation" in p.stderr
