"""Governor mode on loopback: a real governor (``--governor --net``) and real partition
managers (``hpilot service --parent``) as local processes, real ZeroMQ.

Covers: registration before and after submission, the file interface, balancing (a
late partition gets work; a smaller one gets fewer iterations), cross-partition
dependencies and OMITTED, every query at the governor, cancel and remove, kill -9 of a
partition mid-run (its iterations re-run elsewhere, once), the governor's death (the
partitions kill their tasks and exit), a clean drain, and bad flags.  A partition manager
with ``--net`` answers every client request as the governor does (forwarded to it), and
with an error, never a hang, when the governor does not answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import psutil
import pytest
import zmq

from tests.conftest import HPILOT, latest_run, report_entries, run_hpilot, submit, wait_for, write_requests

pytestmark = pytest.mark.integration
HB = "0.5"  # fast heartbeats: a lost partition is noticed in about 3 s


class Cluster:
    """A governor and the partition managers a test starts; everything stopped at the end."""

    def __init__(self, wd: Path) -> None:
        self.wd = wd
        self.procs: List[subprocess.Popen] = []
        self.gov: Optional[subprocess.Popen] = None
        self.ctx = zmq.Context.instance()
        self.address = ""

    def start_governor(self, *extra: str) -> None:
        with open(self.wd / "governor.out", "wb") as out:
            self.gov = subprocess.Popen(HPILOT + ["service", "--governor", "--net", "--wd", str(self.wd),
                                                  "--partition-heartbeat", HB, "--report-format", "json", *extra],
                                        cwd=self.wd, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(self.gov)
        wait_for(lambda: (latest_run(self.wd) / "address").exists()
                 and (latest_run(self.wd) / "partitions.address").exists(), 20, "the governor's address")
        wait_for(lambda: (latest_run(self.wd) / "address").read_text().strip().endswith("}"), 20, "address")
        self.address = json.loads((latest_run(self.wd) / "address").read_text())["address"]

    def start_partition(self, name: str, nodes: str, *extra: str) -> subprocess.Popen:
        with open(self.wd / f"part-{name}.out", "wb") as out:
            p = subprocess.Popen(HPILOT + ["service", "--parent", str(self.wd), "--id", name, "--nodes", nodes,
                                           "--wd", str(self.wd), *extra],
                                 cwd=self.wd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def request(self, payload: Dict[str, Any], timeout: float = 20, address: str = "") -> Dict[str, Any]:
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        try:
            sock.connect((address or self.address).replace("0.0.0.0", "127.0.0.1"))
            sock.send_json(payload)
            answer: Dict[str, Any] = sock.recv_json()  # type: ignore[assignment]
            return answer
        finally:
            sock.close()

    def run_dir_of(self, name: str, p: subprocess.Popen) -> Path:
        """A partition manager's own run dir: <wd>/.hpilot/partitions/<id>-<host>-<pid>."""
        found: List[Path] = []
        wait_for(lambda: bool(found.extend((self.wd / ".hpilot" / "partitions").glob(f"{name}-*-{p.pid}"))
                              or found), 20, f"the run dir of {name}")
        return found[0]

    def partition_address(self, name: str, p: subprocess.Popen) -> str:
        """The client address a partition manager started with --net wrote in its run dir."""
        path = self.run_dir_of(name, p) / "address"
        wait_for(lambda: path.exists() and path.read_text().strip().endswith("}"), 20, f"{name}'s address")
        address: str = json.loads(path.read_text())["address"]
        return address

    def partitions(self) -> List[Dict[str, Any]]:
        return self.request({"request": "resourcesInfo"})["data"].get("partitions", [])

    def status(self, job: str) -> str:
        return self.request({"request": "jobStatus", "jobNames": [job]})["data"]["jobs"][job]["data"]["status"]

    def info(self, job: str) -> Dict[str, Any]:
        ans = self.request({"request": "jobInfo", "jobNames": [job], "params": {"withChilds": True}})
        return ans["data"]["jobs"][job]["data"]

    def wait_final(self, *jobs: str, timeout: float = 60) -> None:
        final = {"SUCCEED", "FAILED", "CANCELED", "OMITTED"}
        wait_for(lambda: all(self.status(j) in final for j in jobs), timeout, f"jobs {jobs} final")

    def stop(self) -> None:
        if self.gov is not None and self.gov.poll() is None:
            with contextlib.suppress(Exception):
                self.request({"request": "finish"}, timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.gov.wait(20)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def cluster(wd: Path) -> Iterator[Cluster]:
    c = Cluster(wd)
    try:
        yield c
    finally:
        c.stop()


def _sweep(name: str, n: int, secs: str = "0", **extra: Any) -> Dict[str, Any]:
    job: Dict[str, Any] = {"name": name, "iteration": {"start": 0, "stop": n},
                           "execution": {"exec": "/bin/sleep", "args": [secs]}}
    job.update(extra)
    return job


def _partitions_of(info: Dict[str, Any]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for child in info.get("childs", []):
        part = child.get("runtime", {}).get("partition")
        if part:
            out[part] = out.get(part, 0) + 1
    return out


def _gone(pid: int) -> bool:
    """Ended. A killed process whose parent died too stays a zombie until init reaps it (some
    machines' init is slow at that, or never does), so a zombie counts as gone."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_submit_before_registration_waits_then_spreads(cluster: Cluster) -> None:
    cluster.start_governor()
    ans = cluster.request({"request": "submit", "jobs": [_sweep("a", 40, "0.05")]})
    assert ans["code"] == 0, ans
    assert cluster.status("a") == "QUEUED"
    cluster.start_partition("left", "2")
    cluster.start_partition("right", "2")
    cluster.wait_final("a")
    assert cluster.status("a") == "SUCCEED"
    parts = _partitions_of(cluster.info("a"))
    assert set(parts) == {"left", "right"} and sum(parts.values()) == 40, parts


def test_registration_after_start_gets_work_at_once_and_late_one_too(cluster: Cluster) -> None:
    cluster.start_governor()
    cluster.start_partition("first", "1")
    wait_for(lambda: len(cluster.partitions()) == 1, 20, "the first partition")
    assert cluster.request({"request": "submit", "jobs": [_sweep("s", 30, "0.2")]})["code"] == 0
    wait_for(lambda: cluster.status("s") == "EXECUTING", 20, "work on the first partition")
    cluster.start_partition("late", "2")
    cluster.wait_final("s")
    parts = _partitions_of(cluster.info("s"))
    assert parts.get("late", 0) > parts.get("first", 0) > 0, parts  # the late one is bigger: more


def test_slow_partition_gets_fewer_iterations(cluster: Cluster) -> None:
    cluster.start_governor()
    cluster.start_partition("fast", "2", "--dry-run-tasks", "0.01")
    cluster.start_partition("slow", "2", "--dry-run-tasks", "0.3")
    wait_for(lambda: len(cluster.partitions()) == 2, 20, "two partitions")
    assert cluster.request({"request": "submit", "jobs": [_sweep("b", 200)]})["code"] == 0
    cluster.wait_final("b")
    assert cluster.status("b") == "SUCCEED"
    parts = _partitions_of(cluster.info("b"))
    assert sum(parts.values()) == 200 and parts["fast"] > 3 * parts["slow"] > 0, parts


def test_file_interface_in_governor_mode(wd: Path) -> None:
    # g needs 3 cores: more than one partition has, so both partitions take part whichever
    # registers first (the 10 short iterations of f may all run on the first)
    write_requests(wd / "req.json", submit(_sweep("f", 10), {"name": "g", "execution": {"exec": "/bin/true"},
                                                             "resources": {"numCores": {"exact": 3}},
                                                             "dependencies": {"after": ["f"]}}))
    r = run_hpilot(["service", "--file-path", "req.json", "--nodes", "2,2", "--partition-nodes", "1",
                    "--report-format", "json"], wd, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    rep = report_entries(wd)
    assert rep["f"]["state"] == "SUCCEED" and rep["g"]["state"] == "SUCCEED", rep
    assert sorted(os.listdir(wd / ".hpilot" / "partitions")) and len(os.listdir(wd / ".hpilot" / "partitions")) == 2


def test_cross_partition_dependencies_and_omitted(cluster: Cluster) -> None:
    cluster.start_governor()
    cluster.start_partition("a", "1")
    cluster.start_partition("b", "1")
    wait_for(lambda: len(cluster.partitions()) == 2, 20, "two partitions")
    jobs = [_sweep("first", 6), {"name": "then", "execution": {"exec": "/bin/true"},
                                 "dependencies": {"after": ["first"]}},
            {"name": "bad", "execution": {"exec": "/bin/false"}},
            {"name": "omitted", "execution": {"exec": "/bin/true"}, "dependencies": {"after": ["bad"]}},
            {"name": "omitted2", "execution": {"exec": "/bin/true"}, "dependencies": {"after": ["omitted"]}}]
    assert cluster.request({"request": "submit", "jobs": jobs})["code"] == 0
    cluster.wait_final("first", "then", "bad", "omitted", "omitted2")
    assert [cluster.status(j) for j in ("first", "then", "bad", "omitted", "omitted2")] == \
        ["SUCCEED", "SUCCEED", "FAILED", "OMITTED", "OMITTED"]
    assert set(_partitions_of(cluster.info("first"))) == {"a", "b"}


def test_queries_cancel_remove_and_too_big(cluster: Cluster) -> None:
    cluster.start_governor()
    cluster.start_partition("x", "2")
    cluster.start_partition("y", "n1:1,n2:1")
    wait_for(lambda: len(cluster.partitions()) == 2, 20, "two partitions")
    res = cluster.request({"request": "resourcesInfo"})["data"]
    assert res["total_cores"] == 4 and res["total_nodes"] == 3
    assert {p["name"]: p["total_cores"] for p in res["partitions"]} == {"x": 2, "y": 2}
    # 5 cores: more than the whole allocation (4), which partitions joining from outside only
    # tell once they have registered: it fails then, with the reason
    jobs = [_sweep("long", 2, "30"), {"name": "huge", "execution": {"exec": "/bin/true"},
                                      "resources": {"numCores": {"exact": 5}}},
            {"name": "quick", "execution": {"exec": "/bin/true"}}]
    assert cluster.request({"request": "submit", "jobs": jobs})["code"] == 0
    cluster.wait_final("huge", "quick")
    assert cluster.status("huge") == "FAILED"
    assert "larger than the allocation (4 cores on 3 node(s))" in json.dumps(cluster.info("huge"))
    wait_for(lambda: cluster.status("long") == "EXECUTING", 20, "long runs")
    listed = cluster.request({"request": "listJobs"})["data"]["jobs"]
    assert set(listed) == {"long", "huge", "quick"}
    info = cluster.info("long")
    running = [c for c in info["childs"] if c.get("runtime")]
    assert running and all(c["runtime"]["partition"] in ("x", "y") and c["runtime"]["allocation"]
                           for c in running)
    running = cluster.request({"request": "removeJob", "jobNames": ["long"]})  # QCG-PilotJob: errors in data
    assert running["code"] == 0 and running["data"]["removed"] == 0 and "long" in running["data"]["errors"]
    ans = cluster.request({"request": "cancelJob", "jobNames": ["long"]})
    assert ans["code"] == 0, ans
    cluster.wait_final("long", timeout=30)
    assert cluster.status("long") == "CANCELED"
    assert cluster.request({"request": "removeJob", "jobNames": ["long", "quick"]})["code"] == 0
    assert set(cluster.request({"request": "listJobs"})["data"]["jobs"]) == {"huge"}
    shown = run_hpilot(["status", "--partitions", "--address", cluster.address], cluster.wd, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert "PARTITION" in shown.stdout and "x" in shown.stdout and "n1,n2" in shown.stdout, shown.stdout
    status = cluster.request({"request": "status"})
    assert status["code"] == 0 and status["data"]["Resources"]["total_cores"] == 4


def test_killed_partition_work_rerun_elsewhere_once(cluster: Cluster) -> None:
    cluster.start_governor()
    doomed = cluster.start_partition("doomed", "2")
    cluster.start_partition("safe", "2")
    wait_for(lambda: len(cluster.partitions()) == 2, 20, "two partitions")
    assert cluster.request({"request": "submit", "jobs": [_sweep("k", 12, "1")]})["code"] == 0
    wait_for(lambda: any(c.get("runtime", {}).get("partition") == "doomed" for c in cluster.info("k")["childs"]),
             20, "work on the doomed partition")
    os.killpg(doomed.pid, signal.SIGKILL)  # the manager and its tasks
    doomed.wait()
    cluster.wait_final("k", timeout=60)
    info = cluster.info("k")
    assert info["status"] == "SUCCEED", info
    reran = [c for c in info["childs"] if c["runtime"].get("attempts", 1) > 1]
    assert reran and all(c["runtime"]["partition"] == "safe" and c["runtime"]["attempts"] == 2 for c in reran)
    assert "doomed" in cluster.request({"request": "resourcesInfo"})["data"]["lost_partitions"]


def test_partitions_exit_when_the_governor_dies(cluster: Cluster, wd: Path) -> None:
    cluster.start_governor()
    p = cluster.start_partition("orphan", "1")
    wait_for(lambda: len(cluster.partitions()) == 1, 20, "the partition")
    marker = wd / "task.pid"
    job = {"name": "t", "execution": {"script": f"echo $$ > {marker}; exec sleep 60"}}
    assert cluster.request({"request": "submit", "jobs": [job]})["code"] == 0
    wait_for(lambda: marker.exists() and marker.read_text().strip() != "", 20, "the task")
    task_pid = int(marker.read_text())
    assert cluster.gov is not None
    cluster.gov.kill()
    cluster.gov.wait()
    p.wait(timeout=30)
    assert p.returncode != 0

    wait_for(lambda: _gone(task_pid), 15, "the task killed with its partition")


def test_partition_drains_without_losing_work(cluster: Cluster) -> None:
    cluster.start_governor()
    leaver = cluster.start_partition("leaver", "2")
    wait_for(lambda: len(cluster.partitions()) == 1, 20, "the partition")
    assert cluster.request({"request": "submit", "jobs": [_sweep("d", 4, "0.5")]})["code"] == 0
    wait_for(lambda: cluster.status("d") == "EXECUTING", 20, "work")
    leaver.send_signal(signal.SIGTERM)
    assert leaver.wait(timeout=30) == 0
    cluster.start_partition("stayer", "2")
    cluster.wait_final("d")
    assert cluster.status("d") == "SUCCEED"
    wait_for(lambda: [p["name"] for p in cluster.partitions()] == ["stayer"], 20, "only the stayer")


@pytest.mark.parametrize("args, words", [
    (["--governor", "--parent", "tcp://127.0.0.1:1"], "--parent"),
    (["--partition-nodes", "0", "--nodes", "2"], "--partition-nodes"),
    (["--partition-nodes", "3", "--nodes", "1,1"], "only 2 node"),
    (["--slurm-partition-nodes", "1", "--nodes", "1,1", "--resources", "local"], "Slurm"),
    (["--id", "x", "--governor"], "--parent"),
    (["--parent", "/nonexistent/dir"], "--parent"),
    (["--parent", "tcp://127.0.0.1:1", "--net-pub-port", "5999"], "--net-pub-port"),  # no events at a partition
])
def test_bad_governor_flags_refused(wd: Path, args: List[str], words: str) -> None:
    r = run_hpilot(["service", "--net", *args], wd, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr


def test_resume_after_kill_9_of_the_governor(wd: Path) -> None:
    write_requests(wd / "r.json", submit(_sweep("a", 40, "0.5")))
    cmd = HPILOT + ["run", "r.json", "--nodes", "2,2", "--partition-nodes", "1", "--partition-heartbeat", HB]
    with open(wd / "first.out", "wb") as out:
        gov = subprocess.Popen(cmd, cwd=wd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (latest_run(wd) / "journal").exists()
                 and len((latest_run(wd) / "journal").read_text().splitlines()) >= 12, 30, "some iterations done")
    finally:
        gov.kill()
        gov.wait()
    parts_dir = wd / ".hpilot" / "partitions"

    def partitions_gone() -> bool:
        return all(_gone(int(d.name.rsplit("-", 1)[1])) for d in parts_dir.iterdir())

    wait_for(partitions_gone, 20, "the partition managers to exit with their governor")
    r = run_hpilot(["resume", str(wd), "--nodes", "2,2", "--partition-nodes", "1", "--report-format", "json"], wd,
                   timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert report_entries(wd)["a"]["state"] == "SUCCEED"


def _same(cluster: Cluster, part: str, payload: Dict[str, Any]) -> Dict[str, Any]:
    """The partition manager's answer is the governor's (asked one after the other: the
    state must be at rest, no job running that the answer would show changing)."""
    via_partition = cluster.request(payload, address=part)
    direct = cluster.request(payload)
    assert via_partition == direct, (payload, via_partition, direct)
    return direct


@pytest.mark.timeout(120)
def test_partition_manager_answers_every_query_as_the_governor(cluster: Cluster) -> None:
    from hpilot.governor.api.manager import Manager

    cluster.start_governor()
    cluster.start_partition("x", "2")
    q = cluster.start_partition("q", "n1:1,n2:1", "--net")
    part = cluster.partition_address("q", q)
    assert part.startswith("tcp://127.0.0.1:") and part != cluster.address
    wait_for(lambda: len(cluster.partitions()) == 2, 20, "two partitions")
    # submitted through the partition manager, run wherever the governor routes them
    jobs = [_sweep("s", 8), {"name": "quick", "execution": {"exec": "/bin/true"}},
            {"name": "huge", "execution": {"exec": "/bin/true"}, "resources": {"numCores": {"exact": 5}}}]
    ans = cluster.request({"request": "submit", "jobs": jobs}, address=part)
    assert ans["code"] == 0 and ans["data"]["submitted"] == 3, ans
    cluster.wait_final("s", "quick", "huge")
    names = ["s", "quick", "huge"]
    assert set(_same(cluster, part, {"request": "listJobs"})["data"]["jobs"]) == set(names)
    status = _same(cluster, part, {"request": "jobStatus", "jobNames": names})
    assert [status["data"]["jobs"][j]["data"]["status"] for j in names] == ["SUCCEED", "SUCCEED", "FAILED"]
    info = _same(cluster, part, {"request": "jobInfo", "jobNames": ["s"], "params": {"withChilds": True}})
    assert set(_partitions_of(info["data"]["jobs"]["s"]["data"])) == {"x", "q"}  # ran on both
    res = _same(cluster, part, {"request": "resourcesInfo"})
    assert {p["name"] for p in res["data"]["partitions"]} == {"x", "q"}
    unknown = _same(cluster, part, {"request": "jobStatus", "jobNames": ["nope"]})
    assert unknown["data"]["jobs"]["nope"]["status"] != 0
    assert _same(cluster, part, {"request": "nonsense"})["code"] != 0
    # cancel and remove through the partition, of a job running on the other partition too
    long = [_sweep("long", 3, "30")]
    assert cluster.request({"request": "submit", "jobs": long}, address=part)["code"] == 0
    wait_for(lambda: cluster.status("long") == "EXECUTING", 20, "long runs")
    running = cluster.request({"request": "removeJob", "jobNames": ["long"]}, address=part)
    assert running["code"] == 0 and "long" in running["data"]["errors"]  # still running
    assert cluster.request({"request": "cancelJob", "jobNames": ["long"]}, address=part)["code"] == 0
    cluster.wait_final("long", timeout=30)
    assert _same(cluster, part, {"request": "jobStatus", "jobNames": ["long"]})[
        "data"]["jobs"]["long"]["data"]["status"] == "CANCELED"
    assert cluster.request({"request": "removeJob", "jobNames": ["long", "quick"]}, address=part)["code"] == 0
    assert set(_same(cluster, part, {"request": "listJobs"})["data"]["jobs"]) == {"s", "huge"}
    # the Python API and the CLI, given the partition manager's address
    m = Manager(part, {"request_timeout": 20})
    try:
        assert m.submit([{"name": "api", "execution": {"exec": "/bin/true"}}]) == ["api"]
        m.wait4("api", timeout=30)
        assert m.status("api")["jobs"]["api"]["data"]["status"] == "SUCCEED"
        assert set(m.list()) == {"s", "huge", "api"}
        assert m.info("s", withChilds=True) == cluster.request(
            {"request": "jobInfo", "jobNames": ["s"], "params": {"withChilds": True}})["data"]
        assert m.resources()["total_cores"] == 4
    finally:
        m.cleanup()
    shown = run_hpilot(["list", "--address", part], cluster.wd, timeout=30)
    assert shown.returncode == 0 and "api" in shown.stdout, shown.stdout + shown.stderr
    # finish is forwarded too: the governor finishes, the client gets its answer, all exit
    assert cluster.request({"request": "finish"}, address=part)["code"] == 0
    assert cluster.gov is not None and cluster.gov.wait(timeout=30) is not None
    assert q.wait(timeout=30) == 0
    assert not (cluster.run_dir_of("q", q) / "address").exists()  # an exited manager is not found


@pytest.mark.timeout(90)
def test_forwarded_query_gets_an_error_when_the_governor_is_gone(cluster: Cluster) -> None:
    cluster.start_governor()
    quick = cluster.start_partition("t", "1", "--net", "--partition-query-timeout", "1")
    slow = cluster.start_partition("w", "1", "--net")  # default timeout: 60 s
    t_addr, w_addr = cluster.partition_address("t", quick), cluster.partition_address("w", slow)
    wait_for(lambda: len(cluster.partitions()) == 2, 20, "two partitions")
    # (off loopback a partition's port is CURVE with the run's client key: tests/integration/test_curve.py)
    assert cluster.request({"request": "listJobs"}, address=w_addr)["code"] == 0
    assert cluster.request({"request": "listJobs"}, address=t_addr)["code"] == 0
    assert cluster.gov is not None
    cluster.gov.kill()
    cluster.gov.wait()
    socks = []
    for addr, payload in ((t_addr, {"request": "listJobs"}), (w_addr, {"request": "listJobs"})):
        sock = cluster.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(addr.replace("0.0.0.0", "127.0.0.1"))
        sock.send_json(payload)
        socks.append(sock)
    try:
        assert socks[0].poll(20_000), "no answer from the partition with a 1 s query timeout"
        timed_out: Dict[str, Any] = socks[0].recv_json()  # type: ignore[assignment]
        assert socks[1].poll(30_000), "no answer from the partition whose governor is gone"
        gone: Dict[str, Any] = socks[1].recv_json()  # type: ignore[assignment]
    finally:
        for sock in socks:
            sock.close()
    # its 1 s query timeout, or its governor's connection closed for 1 s (launcher/upstream.py): both say so
    assert timed_out["code"] != 0 and ("no answer from the governor within 1s" in timed_out["message"]
                                       or "the governor is gone" in timed_out["message"]), timed_out
    # the other one notices the governor's connection closed, exits, and answers what waits
    assert gone["code"] != 0 and "the governor is gone" in gone["message"], gone
    assert quick.wait(timeout=30) != 0 and slow.wait(timeout=30) != 0


def _env_job(name: str, **resources: Any) -> Dict[str, Any]:
    """A job that writes how many cores it got and on which nodes."""
    return {"name": name, "execution": {"exec": "/bin/sh", "args": [
        "-c", f'echo "$QCG_PM_NPROCS $QCG_PM_NODELIST" > {name}.out']},
        "resources": {k: {"exact": v} for k, v in resources.items()}}


def test_partition_boundaries_never_limit_what_runs(wd: Path) -> None:
    """4 nodes of 4 cores in 2 partitions of 2 nodes: jobs of 5 cores, 12 cores and 3 nodes
    run (the last two on cores of both partitions), as they would on one manager; only a job
    larger than the whole allocation is refused, at submit."""
    jobs = [_env_job("c5", numCores=5), _env_job("c12", numCores=12), _env_job("n3", numNodes=3),
            _sweep("small", 12)]
    write_requests(wd / "jobs.json", submit(*jobs))
    r = run_hpilot(["run", "jobs.json", "--nodes", "4,4,4,4", "--partition-nodes", "2", "--report-format", "json"],
                   wd, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    entries = report_entries(wd)
    assert {n: e["state"] for n, e in entries.items()} == {"c5": "SUCCEED", "c12": "SUCCEED", "n3": "SUCCEED",
                                                           "small": "SUCCEED"}
    got = {name: (wd / f"{name}.out").read_text().split() for name in ("c5", "c12", "n3")}
    assert got["c5"][0] == "5" and got["c12"][0] == "12" and got["n3"][0] == "12"
    spans = {name: set(v[1].split(",")) for name, v in got.items()}
    # 12 cores anywhere: 3 nodes or more (what is free when its cores are gathered); 3 nodes: exactly 3
    assert len(spans["c12"]) >= 3 and len(spans["n3"]) == 3
    halves = ({"n0", "n1"}, {"n2", "n3"})  # the two partitions' nodes
    for name in ("c12", "n3"):
        assert all(spans[name] & h for h in halves), f"{name} should use cores of both partitions: {spans[name]}"

    write_requests(wd / "big.json", submit(_env_job("c17", numCores=17)))
    r = run_hpilot(["run", "big.json", "--nodes", "4,4,4,4", "--partition-nodes", "2"], wd, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "job 'c17': resources.numCores: impossible: needs 17 cores, the allocation has 16" in r.stdout + r.stderr
