"""Governor mode in a real allocation of the local 4-node Slurm cluster: ``--slurm-partition-nodes 2``
starts one partition manager per 2 nodes with srun, each limited to its nodes; W1 (2000
iterations of /bin/true) all SUCCEED, spread over both partitions, each task on its partition's nodes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
import zmq

from tests.conftest import latest_run, submit, wait_for, write_requests
from tests.slurm.conftest import HPILOT, cancel, job_name, salloc

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def test_w1_over_two_slurm_partitions(tmp_path: Path) -> None:
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "w1", "iteration": {"stop": 2000}, "execution": {"exec": "/bin/true"}},
        # each probe holds its core a moment: 8 of them cannot all run on one node of 2 cores,
        # whichever partition gets them (an instant echo could, one after the other)
        {"name": "probe", "iteration": {"stop": 8}, "execution": {"script": "echo $SLURMD_NODENAME; sleep 0.5",
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
    # the links are CURVE: partition managers (started by srun) read the run's partition key, their
    # agents their own run's agent key; each key file is 0600 and travels by path, never by value
    run = latest_run(tmp_path)
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_IMODE((run / "partition.key").stat().st_mode) == 0o600
    for d in parts:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert stat.S_IMODE((d / "agent.key").stat().st_mode) == 0o600
        for agent_log in (d / "agents").glob("agent-*.log"):
            assert stat.S_IMODE(agent_log.stat().st_mode) == 0o600
        secret = json.loads((d / "agent.key").read_text())["secret"]
        assert all(secret not in f.read_text(errors="replace") for f in d.rglob("*.log"))


def _request(address: str, payload: Dict[str, Any], timeout: float = 20) -> Dict[str, Any]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    try:
        sock.connect(address)
        sock.send_json(payload)
        answer: Dict[str, Any] = sock.recv_json()  # type: ignore[assignment]
        return answer
    finally:
        sock.close()


def _childs(address: str, job: str) -> List[Dict[str, Any]]:
    ans = _request(address, {"request": "jobInfo", "jobNames": [job], "params": {"withChilds": True}})
    childs: List[Dict[str, Any]] = ans["data"]["jobs"][job]["data"].get("childs", [])
    return childs


def test_partition_killed_in_the_allocation_loses_nothing(tmp_path: Path) -> None:
    """kill -9 of a partition manager that srun started: its iterations re-run on the other
    partition (attempts 2), a dependency across partitions holds, OMITTED propagates, and
    the governor answers every query about it while the allocation runs."""
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "k", "iteration": {"stop": 16}, "execution": {"script": "touch started.${it}; sleep 3"}},
        {"name": "a", "execution": {"exec": "/bin/true"}},
        {"name": "b", "iteration": {"stop": 4}, "execution": {"exec": "/bin/true"}, "dependencies": {"after": ["a"]}},
        {"name": "c", "execution": {"exec": "/bin/false"}},
        {"name": "d", "execution": {"exec": "/bin/true"}, "dependencies": {"after": ["c"]}},
        finish=False))
    name = job_name(tmp_path)
    cmd = ["salloc", "-N", "4", "--ntasks-per-node=2", "--time=5", f"--job-name={name}", *HPILOT, "service",
           "--file-path", str(reqs), "--wd", str(tmp_path), "--slurm-partition-nodes", "2", "--net",
           "--partition-heartbeat", "0.5", "--report-format", "json"]
    with open(tmp_path / "salloc.out", "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / ".hpilot" / "latest" / "address").exists(), 60, "the governor's address")
        address = json.loads((latest_run(tmp_path) / "address").read_text())["address"]
        running: List[str] = []

        def a_partition_runs_k() -> bool:
            running[:] = [c["runtime"]["partition"] for c in _childs(address, "k")
                          if c["state"] == "EXECUTING" and c.get("runtime", {}).get("partition")]
            return bool(running)

        wait_for(a_partition_runs_k, 60, "iterations of k running on a partition")
        doomed = running[0]
        (run_dir,) = (tmp_path / ".hpilot" / "partitions").glob(f"{doomed}-*")
        os.kill(int(run_dir.name.rsplit("-", 1)[1]), signal.SIGKILL)
        final = {"SUCCEED", "FAILED", "CANCELED", "OMITTED"}

        def states() -> Dict[str, str]:
            ans = _request(address, {"request": "jobStatus", "jobNames": ["k", "a", "b", "c", "d"]})
            return {j: v["data"]["status"] for j, v in ans["data"]["jobs"].items()}

        wait_for(lambda: set(states().values()) <= final, 90, "every job final")
        assert states() == {"k": "SUCCEED", "a": "SUCCEED", "b": "SUCCEED", "c": "FAILED", "d": "OMITTED"}
        childs = _childs(address, "k")
        reran = [c for c in childs if c["runtime"].get("attempts", 1) > 1]
        assert reran and all(c["runtime"]["attempts"] == 2 and c["runtime"]["partition"] != doomed for c in reran)
        assert all(c["state"] == "SUCCEED" for c in childs) and len(childs) == 16
        resources = _request(address, {"request": "resourcesInfo"})["data"]
        assert doomed in resources["lost_partitions"], resources
        listed = _request(address, {"request": "listJobs"})["data"]["jobs"]
        assert sorted(listed) == ["a", "b", "c", "d", "k"]
        assert _request(address, {"request": "finish"})["code"] == 0
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cancel(name)


def test_mpi_hello_world_across_two_slurm_partitions(tmp_path: Path) -> None:
    """A real MPI program on 3 nodes while each partition has 2: its cores are gathered in
    both partitions and one of them starts it (OpenMPI, as in test_slurm_allocation)."""
    import shutil

    from tests.slurm.test_slurm_allocation import HELLO_C

    if shutil.which("mpicc") is None or shutil.which("mpirun") is None:
        pytest.skip("no OpenMPI here (apt-get install openmpi-bin libopenmpi-dev); .ci/run installs it")
    (tmp_path / "hello.c").write_text(HELLO_C)
    subprocess.run(["mpicc", "-o", "hello", "hello.c"], cwd=tmp_path, check=True, timeout=60)
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "hello", "execution": {"exec": str(tmp_path / "hello"), "model": "openmpi", "stdout": "hello.out",
                                        "stderr": "hello.err"},
         "resources": {"numNodes": {"exact": 3}, "numCores": {"exact": 2}, "wt": "60s"}},
        # after hello: the test nodes claim 4 CPUs on a 2-CPU machine, and a rankfile naming cores 2-3
        # (what hello gets when small took 0-1 first) cannot be mapped by OpenMPI here
        {"name": "small", "iteration": {"stop": 6}, "execution": {"exec": "/bin/true"},
         "dependencies": {"after": ["hello"]}}))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_oob_tcp_if_include="lo", OMPI_MCA_btl_tcp_if_include="lo", OMPI_MCA_btl="self,tcp")
    p = salloc(["run", str(reqs), "--wd", str(tmp_path), "--slurm-partition-nodes", "2", "--report-format", "json"],
               tmp_path, per_node=2, env=env, extra=["--exclusive"], timeout=120)
    err = (tmp_path / "hello.err").read_text() if (tmp_path / "hello.err").exists() else ""
    assert p.returncode == 0, p.stdout + p.stderr + err
    out = sorted((tmp_path / "hello.out").read_text().splitlines())
    assert len(out) == 6 and all(line.endswith("sum 15") for line in out), out
    nodes = sorted(line.split()[5] for line in out)
    assert len(set(nodes)) == 3 and all(nodes.count(n) == 2 for n in set(nodes)), nodes
    # the allocation's nodes n1..n4 are split p1 = n1,n2 and p2 = n3,n4: three nodes use both
    assert set(nodes) & {"n1", "n2"} and set(nodes) & {"n3", "n4"}, nodes
