"""hpilot inside real allocations of the local 4-node Slurm cluster (tests/slurm/start.sh).

Every claim is checked against what Slurm itself tells a process: SLURMD_NODENAME comes
from the slurmd of the node the agent runs on, the CPU list from /proc/self/status.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

from tests.conftest import latest_run, submit, wait_for, write_requests
from tests.slurm.conftest import HPILOT, cancel, job_name, salloc

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]

PROBE = ("echo $QCG_PM_NODELIST $SLURMD_NODENAME $HPILOT_NODE $QCG_PM_CPU_SET "
         "$(awk '/Cpus_allowed_list/ {print $2}' /proc/self/status) $SLURM_JOB_NODELIST")


def lines(wd: Path, pattern: str) -> List[List[str]]:
    return [p.read_text().split() for p in sorted(wd.glob(pattern))]


def test_nodes_cpus_placement_and_affinity(tmp_path: Path) -> None:
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "probe", "iteration": {"stop": 8},
         "execution": {"script": PROBE, "stdout": "probe.${it}"}, "resources": {"numCores": {"exact": 1}}}))
    p = salloc(["run", str(reqs), "--wd", str(tmp_path)], tmp_path)
    assert p.returncode == 0, p.stderr
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    # SLURM_JOB_NODELIST=n[1-4], SLURM_JOB_CPUS_PER_NODE=2(x4), the CPU ids from scontrol: two of a node's
    # four, 0-1 on an empty cluster, others when another allocation (a test running beside this one, or
    # another user's) holds some of them
    nodes = status["resources"]["nodes"]
    assert [n["name"] for n in nodes] == ["n1", "n2", "n3", "n4"]
    assert all(len(set(n["cores"])) == 2 and set(n["cores"]) <= {0, 1, 2, 3} for n in nodes), nodes
    cores_of = {n["name"]: n["cores"] for n in nodes}
    assert status["resources"]["binding"] is True
    out = lines(tmp_path, "probe.*")
    assert len(out) == 8
    for placed, slurmd, agent, cpu_set, allowed, joblist in out:
        assert slurmd == placed == agent  # the task really ran on the node it was placed on
        assert int(cpu_set) in cores_of[placed]  # on a CPU Slurm gave the job there
        # bound to its one core; ids beyond this machine's 2 real CPUs are mapped onto them by the agent
        assert allowed == str(int(cpu_set) % 2)
        assert joblist == placed  # ch. 8: the task sees its own nodes as the job's
    assert sorted(o[1] for o in out) == ["n1", "n1", "n2", "n2", "n3", "n3", "n4", "n4"]


def test_system_core_limits_and_oversized_job(tmp_path: Path) -> None:
    reqs = write_requests(tmp_path / "r.json", [
        {"request": "submit", "jobs": [{"name": "big", "execution": {"exec": "/bin/true"},
                                        "resources": {"numCores": {"exact": 3}}}]},
        *submit({"name": "probe", "iteration": {"stop": 3},
                 "execution": {"script": PROBE, "stdout": "probe.${it}"}})])
    p = salloc(["run", str(reqs), "--wd", str(tmp_path), "--system-core", "--slurm-limit-nodes-range-begin", "1",
                "--slurm-limit-nodes-range-end", "3"], tmp_path, per_node=1, extra=["--exclusive"])
    # nodes n2, n3 (4 CPUs each under --exclusive), minus the system core on n2: 7 cores; 'big' fits
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    assert [n["name"] for n in status["resources"]["nodes"]] == ["n2", "n3"]
    assert status["resources"]["total_cores"] == 7
    assert p.returncode == 0, p.stderr
    assert {o[1] for o in lines(tmp_path, "probe.*")} <= {"n2", "n3"}
    # more than the allocation has: refused at submit, with the reason
    reqs2 = write_requests(tmp_path / "r2.json", submit(
        {"name": "huge", "execution": {"exec": "/bin/true"}, "resources": {"numNodes": {"exact": 3}}}))
    p = salloc(["run", str(reqs2), "--wd", str(tmp_path)], tmp_path, nodes=2, per_node=1)
    assert p.returncode == 2
    assert "needs 3 node(s)" in p.stderr and "the allocation has 2" in p.stderr


def test_sbatch_example_from_the_readme(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    script = readme.split("<!-- tests/slurm: sbatch example -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    (tmp_path / "pilot.sh").write_text(script)
    write_requests(tmp_path / "jobs.json", submit(
        {"name": "sweep", "iteration": {"stop": 16}, "execution": {"script": PROBE, "stdout": "out.${it}"}}))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    name = job_name(tmp_path)
    try:
        p = subprocess.run(["sbatch", "--wait", f"--job-name={name}", "-o", "slurm.out", "pilot.sh"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=90)
    finally:
        cancel(name)
    out = (tmp_path / "slurm.out").read_text() if (tmp_path / "slurm.out").exists() else ""
    assert p.returncode == 0, p.stderr + out
    assert "1 job(s) (1 SUCCEED), 16 task(s): 16 succeeded" in out
    got = lines(tmp_path, "out.*")
    assert len(got) == 16 and all(o[0] == o[1] for o in got)
    assert {o[1] for o in got} == {"n1", "n2", "n3", "n4"}


def test_disable_nl_runs_one_srun_per_task(tmp_path: Path) -> None:
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "probe", "iteration": {"stop": 4},
         "execution": {"script": "echo $QCG_PM_NODELIST $SLURMD_NODENAME $SLURM_STEP_ID $SLURM_CPU_BIND_LIST "
                                 "$QCG_PM_CPU_SET",
                       "stdout": "p.${it}"}}))
    p = salloc(["run", str(reqs), "--wd", str(tmp_path), "--disable-nl"], tmp_path)
    assert p.returncode == 0, p.stderr
    out = lines(tmp_path, "p.*")
    assert len(out) == 4
    for placed, slurmd, step, mask, cpu in out:
        assert placed == slurmd and step.isdigit()  # its own job step, on its node
        assert int(mask, 16) == 1 << int(cpu)  # task/none: Slurm only reports the binding asked for
    assert not (latest_run(tmp_path) / "agents").exists()


def test_agents_that_cannot_start_fail_the_run_clearly(tmp_path: Path) -> None:
    reqs = write_requests(tmp_path / "r.json", submit({"name": "x", "execution": {"exec": "/bin/true"}}))
    # multi mode has no sshd: every ssh start fails
    p = salloc(["run", str(reqs), "--wd", str(tmp_path), "--nl-start-method", "ssh", "--nl-init-timeout", "10"],
               tmp_path)
    assert p.returncode == 2
    assert "node launcher agents: 0 of 4 started, 4 needed" in p.stderr
    assert "n1: its agent's process ended" in p.stderr
    assert "Traceback" not in p.stderr


def test_agent_killed_mid_run(tmp_path: Path) -> None:
    """Its tasks die with it (its guard), its node takes no more work, and what ran there runs
    again elsewhere once it is surely dead (once: hpilot.retry.lost); the rest goes on."""
    script = 'echo $SLURMD_NODENAME > node.${it}; touch started.${it}; sleep 4'
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "long", "iteration": {"stop": 8}, "execution": {"script": script}},
        {"name": "after", "iteration": {"stop": 6},
         "execution": {"script": "echo $SLURMD_NODENAME", "stdout": "after.${it}"}}))
    name = job_name(tmp_path)
    cmd = ["salloc", "-N", "4", "--ntasks-per-node=2", "--time=5", f"--job-name={name}", *HPILOT, "run", str(reqs),
           "--wd", str(tmp_path), "--report-format", "json"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(list(tmp_path.glob("started.*"))) == 8, 30, "all 8 long tasks to start")
        victim = _agent_pid(tmp_path, "n3")
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cancel(name)
    assert proc.returncode == 0, err
    log = (latest_run(tmp_path) / "service.log").read_text()
    assert "node n3 lost: its agent's process ended" in log
    report = {e["name"]: e for e in map(json.loads, (latest_run(tmp_path) / "jobs.report").read_text().splitlines())}
    assert report["long"]["state"] == "SUCCEED"
    assert report["after"]["state"] == "SUCCEED"
    assert "n3" not in {o[0] for o in lines(tmp_path, "after.*")}
    # the two that ran on n3 started twice, the second time elsewhere (node.IT says where)
    from hpilot.governor.service import journal

    starts: Dict[int, int] = {}
    for rec in journal.started(journal.read(str(latest_run(tmp_path) / "journal")).records):
        if rec[0] == "long":
            starts[rec[1]] = starts.get(rec[1], 0) + 1
    again = [it for it, n in starts.items() if n == 2]
    assert len(again) == 2 and all(n <= 2 for n in starts.values()), starts
    assert all((tmp_path / f"node.{it}").read_text().strip() != "n3" for it in again)


def _agent_pid(wd: Path, node: str) -> int:
    key_file = str(latest_run(wd) / "agent.key")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hpilot.launcher.agent" in cmd and key_file.encode() in cmd and node.encode() in cmd:
            return int(pid)
    raise AssertionError(f"no agent process for {node}")


def _pids_with(*needles: bytes) -> List[int]:
    """Live (not zombie) processes whose command line holds every needle. Each process is read
    once, and one that ends meanwhile is skipped: /proc entries vanish between two reads."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if all(n in cmdline for n in needles) and b" Z" not in Path(
                    f"/proc/{pid}/stat").read_bytes().split(b")", 1)[1][:3]:
                out.append(int(pid))
        except (OSError, IndexError):  # gone between listdir and the reads (stat empty at exit)
            continue
    return out


def test_no_orphans_after_kill_9_of_the_manager(tmp_path: Path) -> None:
    marker = f"hpilot-orphan-check-{os.getpid()}"
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "long", "iteration": {"stop": 4},
         "execution": {"script": f"touch started.${{it}}; exec -a {marker} sleep 300"}}))
    name = job_name(tmp_path)
    cmd = ["salloc", "-N", "4", "--ntasks-per-node=1", "--time=5", f"--job-name={name}", *HPILOT, "run", str(reqs),
           "--wd", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(list(tmp_path.glob("started.*"))) == 4, 30, "all 4 tasks to start")
        key_file = str(latest_run(tmp_path) / "agent.key").encode()
        wait_for(lambda: len(_pids_with(marker.encode())) == 4, 10, "the 4 tasks to exec")
        assert len(_pids_with(key_file)) >= 4
        service = [p for p in _pids_with(b"hpilot.governor") if _ppid(p) == proc.pid]
        assert len(service) == 1
        os.kill(service[0], signal.SIGKILL)
        wait_for(lambda: not _pids_with(marker.encode()), 30, "the tasks to die with their manager")
        wait_for(lambda: not _pids_with(key_file, b"hpilot.launcher.agent"), 30, "the agents to exit")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cancel(name)


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


# ---- execution models in the allocation ----


def test_srunmpi_and_intelmpi_models(tmp_path: Path) -> None:
    fake = tmp_path / "fake-mpirun"
    fake.write_text("#!/bin/sh\nprintf '%s\\n' \"$*\"\necho I_MPI_PIN=$I_MPI_PIN\n")
    fake.chmod(0o755)
    rank = "echo $SLURM_PROCID $SLURMD_NODENAME $SLURM_CPU_BIND_LIST"
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "srun", "execution": {"script": rank, "model": "srunmpi", "stdout": "srun.out"},
         "resources": {"numNodes": {"exact": 2}, "numCores": {"exact": 2}}},
        {"name": "impi", "execution": {"exec": "/bin/true", "args": ["-v"], "model": "intelmpi", "stdout": "impi.out",
                                       "model_opts": {"mpirun": str(fake)}},
         "resources": {"numNodes": {"exact": 2}, "numCores": {"exact": 2}}}))
    # --exclusive: CPU ids 0-3 on each node, so both tasks get CPUs 0,1 (this machine's real ones)
    p = salloc(["run", str(reqs), "--wd", str(tmp_path)], tmp_path, nodes=2, per_node=2, extra=["--exclusive"])
    assert p.returncode == 0, p.stderr + (tmp_path / "srun.out").read_text()
    ranks = sorted((tmp_path / "srun.out").read_text().split("\n"))
    got = sorted(tuple(r.split()[:2]) for r in ranks if r.strip())
    # whichever two nodes the allocation got (other Slurm tests may hold n1/n2): ranks 0,1 on one, 2,3 on the other
    assert [r for r, _ in got] == ["0", "1", "2", "3"], got
    nodes = [n for _, n in got]
    assert nodes[0] == nodes[1] != nodes[2] == nodes[3], got
    masks = {r.split()[2] for r in ranks if r.strip()}  # what srun was asked (task/none cannot bind)
    assert masks in ({"0x1,0x2"}, {"1,2"}, {"0x4,0x8"}, {"4,8"}), masks
    impi = (tmp_path / "impi.out").read_text().splitlines()
    # the two tasks run side by side: one got CPUs 0,1 of both nodes, the other 2,3
    m = re.fullmatch(r"-n 2 -host (\S+) -env I_MPI_PIN_PROCESSOR_LIST (0,1|2,3) /bin/true -v : "
                     r"-n 2 -host (\S+) -env I_MPI_PIN_PROCESSOR_LIST \2 /bin/true -v", impi[0])
    assert m is not None and m.group(1) != m.group(3), impi[0]
    assert impi[1] == "I_MPI_PIN=1"


HELLO_C = textwrap.dedent("""
    #include <mpi.h>
    #include <stdio.h>
    #include <stdlib.h>
    int main(int argc, char **argv) {
        int rank, size;
        MPI_Init(&argc, &argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        int sum = 0;
        MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        const char *node = getenv("SLURMD_NODENAME");
        printf("rank %d of %d on %s sum %d\\n", rank, size, node ? node : "?", sum);
        MPI_Finalize();
        return 0;
    }
""")


def test_openmpi_hello_world_across_two_nodes(tmp_path: Path) -> None:
    if shutil.which("mpicc") is None or shutil.which("mpirun") is None:
        pytest.skip("no OpenMPI here (apt-get install openmpi-bin libopenmpi-dev); the openmpi command line "
                    "is checked exactly in tests/unit/test_mpi_models.py")
    (tmp_path / "hello.c").write_text(HELLO_C)
    subprocess.run(["mpicc", "-o", "hello", "hello.c"], cwd=tmp_path, check=True, timeout=60)
    reqs = write_requests(tmp_path / "r.json", submit(
        {"name": "hello", "execution": {"exec": str(tmp_path / "hello"), "model": "openmpi", "stdout": "hello.out",
                                        "stderr": "hello.err"},
         "resources": {"numNodes": {"exact": 2}, "numCores": {"exact": 2}, "wt": "40s"}}))
    # root in CI; and the local cluster's "nodes" are one host on the loopback, so OpenMPI must use lo and tcp
    # (its shared-memory transport crashes between ranks that believe they are on different nodes)
    env: Dict[str, str] = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                               OMPI_MCA_oob_tcp_if_include="lo", OMPI_MCA_btl_tcp_if_include="lo",
                               OMPI_MCA_btl="self,tcp")
    # --exclusive: the rankfile's slots are CPUs 0 and 1 of each node, which this machine really has
    p = salloc(["run", str(reqs), "--wd", str(tmp_path)], tmp_path, nodes=2, per_node=2, env=env,
               extra=["--exclusive"])
    err = (tmp_path / "hello.err").read_text() if (tmp_path / "hello.err").exists() else ""
    assert p.returncode == 0, p.stderr + err
    out = sorted((tmp_path / "hello.out").read_text().splitlines())
    assert len(out) == 4 and all(line.endswith("sum 6") for line in out), out
    # two ranks on each node of the allocation (n1 and n2 on an empty cluster; Slurm picks others when
    # another allocation holds one of them)
    status = json.loads((latest_run(tmp_path) / "final_status").read_text())
    allocated = [n["name"] for n in status["resources"]["nodes"]]
    assert len(allocated) == 2 and sorted(line.split()[5] for line in out) == sorted(allocated * 2), (out, allocated)
