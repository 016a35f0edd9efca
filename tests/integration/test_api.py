"""The Python API (``Manager``, ``LocalManager``, ``Jobs``, ``JobInfo``, ``Executor``)
against a real service started in the background on loopback.

Every test starts its own ``LocalManager`` (a real ``hpilot service --net``
process) in a temporary working directory and always stops it: ``finish()``,
and ``kill_manager_process()`` when that does not work.  Waiting is done with
the API's own waits or by polling with a deadline, never by sleeping.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import psutil
import pytest
import zmq
from hpilot.governor import (
    BasicTemplate,
    ConnectionError,
    Executor,
    FileError,
    HPilotFuture,
    InvalidJobDescriptionError,
    JobInfo,
    JobNotDefinedError,
    Jobs,
    LocalManager,
    Manager,
    QCGPJMAError,
    TaskFailedError,
    TimeoutElapsed,
)

from tests.conftest import wait_for, write_requests

pytestmark = pytest.mark.integration

NODES = "n1:2,n2:2"  # two nodes of two cores each
CFG: Dict[str, Any] = {"init_timeout": 30, "request_timeout": 20}
FINAL = ("SUCCEED", "FAILED", "CANCELED", "OMITTED")


# ---- helpers ----


def stop_manager(m: LocalManager) -> None:
    """finish(); when that fails or hangs, kill the service process."""
    try:
        if m._req is not None and m.process.poll() is None:
            m.finish()
    except Exception:  # noqa: BLE001 - teardown must go on
        pass
    finally:
        if m.process.poll() is None:
            m.kill_manager_process()


@pytest.fixture
def manager(wd: Path) -> Iterator[LocalManager]:
    m = LocalManager(["--nodes", NODES, "--wd", str(wd)], CFG)
    try:
        yield m
    finally:
        stop_manager(m)


@contextlib.contextmanager
def executor(wd: Path, resources: str = "2") -> Iterator[Executor]:
    e = Executor(str(wd), resources)
    try:
        yield e
    finally:
        proc = e.manager.process
        if proc.poll() is None:
            e._stop.set()
            with contextlib.suppress(Exception):
                e.manager.finish()
            if proc.poll() is None:
                e.manager.kill_manager_process()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def state(m: Manager, name: str) -> str:
    entry = m.status(name)["jobs"][name]
    assert entry["status"] == 0, entry
    return str(entry["data"]["status"])


def wait_state(m: Manager, name: str, wanted: str, timeout: float = 15.0) -> None:
    wait_for(lambda: state(m, name) == wanted, timeout, f"job {name} to be {wanted}")


def task_pid(m: Manager, name: str) -> int:
    data = m.info(name)["jobs"][name]["data"]
    return int(data["runtime"]["pid"])


def sleeper(name: str, seconds: int = 30, cores: int = 1) -> Dict[str, Any]:
    return {"name": name, "execution": {"exec": "/bin/sleep", "args": [str(seconds)]},
            "resources": {"numCores": {"exact": cores}}}


# ---- Jobs: building job groups on the client side ----


def test_jobs_add_simple_format_is_translated_and_runs(manager: LocalManager, wd: Path) -> None:
    jobs = (Jobs()
            .add(name="two", exec="/bin/sh", args=["-c", "echo $QCG_PM_NPROCS > two.txt"], numCores=2)
            .add(name="one", exec="/bin/echo", args="single", stdout="one.txt")
            .add(name="stop", script="echo ${it} > stop_${it}.txt", iteration=3)
            .add(name="vals", script="echo ${itval} > vals_${it}.txt", iteration=["x", "y"])
            .add(name="dep", script="test -f two.txt && touch dep.txt", after="two"))
    std = {j["name"]: j for j in jobs.ordered_jobs()}
    assert std["two"]["resources"]["numCores"] == {"exact": 2}
    assert std["one"]["execution"]["args"] == ["single"]
    assert std["stop"]["iteration"] == {"stop": 3}
    assert std["vals"]["iteration"] == {"values": ["x", "y"]}
    assert std["dep"]["dependencies"] == {"after": ["two"]}

    assert manager.submit(jobs) == ["two", "one", "stop", "vals", "dep"]
    assert manager.wait4(jobs.job_names(), timeout=30) == {n: "SUCCEED" for n in jobs.job_names()}
    assert (wd / "two.txt").read_text().strip() == "2"
    assert (wd / "one.txt").read_text().strip() == "single"
    assert sorted(p.name for p in wd.glob("stop_*.txt")) == ["stop_0.txt", "stop_1.txt", "stop_2.txt"]
    # with 'values', ${it} is the index and ${itval} the value (as QCG-PilotJob's executionjob.py)
    assert (wd / "vals_0.txt").read_text().strip() == "x"
    assert (wd / "vals_1.txt").read_text().strip() == "y"
    assert (wd / "dep.txt").exists()
    info = manager.info_parsed(["two", "stop", "vals"])
    assert info["two"].total_cores == 2
    assert info["stop"].iterations is not None and info["stop"].iterations["total"] == 3
    assert info["vals"].iterations is not None and info["vals"].iterations["total"] == 2
    # 'dep' ran after 'two' finished: its history starts executing later
    hist = manager.info_parsed("dep")["dep"].history
    two_hist = info["two"].history
    assert hist[-1].endswith("SUCCEED") and two_hist[-1].endswith("SUCCEED")
    dep_exec = next(h for h in hist if h.endswith("EXECUTING"))
    assert dep_exec.rsplit(": ", 1)[0] >= two_hist[-1].rsplit(": ", 1)[0]


def test_jobs_add_std_remove_clear_and_names() -> None:
    jobs = Jobs()
    jobs.add_std({"name": "a", "execution": {"exec": "/bin/true"}})
    jobs.add_std(name="b", execution={"script": "true"}, resources={"numCores": {"exact": 1}})
    jobs.add(name="c", exec="/bin/true")
    assert jobs.job_names() == ["a", "b", "c"]
    assert jobs.ordered_job_names() == ["a", "b", "c"]
    assert [j["name"] for j in jobs.ordered_jobs()] == ["a", "b", "c"]
    assert jobs.ordered_jobs()[1] == {"name": "b", "execution": {"script": "true"},
                                      "resources": {"numCores": {"exact": 1}}}
    jobs.remove("b")
    assert jobs.job_names() == ["a", "c"]
    with pytest.raises(JobNotDefinedError):
        jobs.remove("b")
    jobs.add_std(name="b", execution={"exec": "/bin/true"})  # the name is free again
    assert jobs.job_names() == ["a", "c", "b"]
    jobs.clear()
    assert jobs.job_names() == [] and jobs.ordered_jobs() == [] and len(jobs) == 0


def test_jobs_load_from_request_file_and_job_list_and_save_round_trip(tmp_path: Path) -> None:
    a = {"name": "a", "execution": {"exec": "/bin/true"}}
    b = {"name": "b", "execution": {"script": "echo b"}, "dependencies": {"after": ["a"]}}
    c = {"name": "c", "execution": {"exec": "/bin/echo", "args": ["c"]}, "iteration": {"start": 1, "stop": 3}}
    req_file = write_requests(tmp_path / "reqs.json", [
        {"request": "submit", "jobs": [a, b]},
        {"request": "listJobs"},
        {"request": "submit", "jobs": [c]},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ])
    from_requests = Jobs().load_from_file(str(req_file))
    assert from_requests.ordered_jobs() == [a, b, c]

    list_file = tmp_path / "list.json"
    list_file.write_text(json.dumps([c, a]))
    from_list = Jobs().load_from_file(str(list_file))
    assert from_list.ordered_jobs() == [c, a]

    saved = tmp_path / "saved.json"
    from_requests.save_to_file(str(saved))
    assert Jobs().load_from_file(str(saved)).ordered_jobs() == [a, b, c]
    # the saved file is itself a valid QCG-PilotJob request file
    data = json.loads(saved.read_text())
    assert isinstance(data, list) and all(r.get("request") == "submit" for r in data)

    with pytest.raises(FileError):
        Jobs().load_from_file(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(InvalidJobDescriptionError):
        Jobs().load_from_file(str(tmp_path / "broken.json"))
    (tmp_path / "bad_job.json").write_text(json.dumps([{"name": "x", "execution": {}}]))
    with pytest.raises(InvalidJobDescriptionError, match="execution"):
        Jobs().load_from_file(str(tmp_path / "bad_job.json"))
    with pytest.raises(FileError):
        from_requests.save_to_file(str(tmp_path / "no" / "such" / "dir" / "f.json"))


@pytest.mark.parametrize(("attrs", "field"), [
    ({"name": "x", "exec": "/bin/true", "numCores": "lots"}, "numCores"),
    ({"name": "x", "exec": "/bin/true", "numCores": {"exact": 0}}, "numCores"),
    ({"name": "x"}, "execution"),
    ({"name": "x", "exec": "/bin/true", "script": "true"}, "script"),
    ({"name": "x", "exec": "/bin/true", "iteration": "abc"}, "iteration"),
    ({"name": "x", "exec": "/bin/true", "bogus": 1}, "bogus"),
])
def test_jobs_invalid_description_names_the_field(attrs: Dict[str, Any], field: str) -> None:
    jobs = Jobs()
    with pytest.raises(InvalidJobDescriptionError, match=field):
        jobs.add(**attrs)
    assert jobs.job_names() == []  # nothing was added


def test_jobs_add_std_invalid_and_duplicate_name() -> None:
    jobs = Jobs().add(name="d", exec="/bin/true")
    with pytest.raises(InvalidJobDescriptionError, match="d"):
        jobs.add(name="d", exec="/bin/true")
    with pytest.raises(InvalidJobDescriptionError, match="d"):
        jobs.add_std(name="d", execution={"exec": "/bin/true"})
    with pytest.raises(InvalidJobDescriptionError, match="numCores"):
        jobs.add_std(name="y", execution={"exec": "/bin/true"}, resources={"numCores": {"exact": -1}})
    assert jobs.job_names() == ["d"]
    assert issubclass(InvalidJobDescriptionError, QCGPJMAError)


# ---- submit, list, status, info ----


def test_submit_list_status_info(manager: LocalManager) -> None:
    names = manager.submit([{"name": "ok", "execution": {"exec": "/bin/true"}},
                            {"name": "bad", "execution": {"script": "exit 3"}},
                            {"name": "it", "execution": {"script": "true"}, "iteration": {"stop": 3}}])
    assert names == ["ok", "bad", "it"]
    assert manager.wait4(names, timeout=30) == {"ok": "SUCCEED", "bad": "FAILED", "it": "SUCCEED"}

    listing = manager.list()
    assert set(listing) == {"ok", "bad", "it"}
    assert listing["ok"]["status"] == "SUCCEED"
    assert listing["bad"]["status"] == "FAILED"
    assert listing["it"]["iterations"]["total"] == 3

    st = manager.status(["ok", "bad", "nope"])["jobs"]
    assert st["ok"] == {"status": 0, "data": {"jobName": "ok", "status": "SUCCEED"}}
    assert st["bad"]["data"]["status"] == "FAILED"
    assert st["nope"]["status"] != 0 and "nope" in st["nope"]["message"]
    assert manager.status("ok")["jobs"]["ok"]["data"]["status"] == "SUCCEED"  # a single name

    info = manager.info(["ok", "it"])["jobs"]
    ok = info["ok"]["data"]
    assert ok["jobName"] == "ok" and ok["status"] == "SUCCEED"
    assert ok["runtime"]["exit_code"] == "0" and ok["runtime"]["allocation"]
    assert "QUEUED" in ok["history"] and "SUCCEED" in ok["history"]
    assert "childs" not in info["it"]["data"]
    assert info["it"]["data"]["iterations"] == {"start": 0, "stop": 3, "total": 3, "finished": 3, "failed": 0}

    with_childs = manager.info("it", withChilds=True)["jobs"]["it"]["data"]
    assert [c["iteration"] for c in with_childs["childs"]] == [0, 1, 2]
    assert all(c["state"] == "SUCCEED" and c["runtime"]["exit_code"] == "0" for c in with_childs["childs"])


def test_info_parsed_gives_job_info(manager: LocalManager, wd: Path) -> None:
    manager.submit(Jobs()
                   .add(name="spread", exec="/bin/sleep", args="0.2", numNodes=2, numCores=1, wd="sub")
                   .add(name="fail", script="exit 3")
                   .add(name="it", script="true", iteration=3))
    manager.wait4(["spread", "fail", "it"], timeout=30)
    parsed = manager.info_parsed(["spread", "fail", "it"], withChilds=True)
    assert all(isinstance(p, JobInfo) for p in parsed.values())

    spread = parsed["spread"]
    assert spread.name == "spread" and spread.status == "SUCCEED"
    assert spread.nodes is not None and sorted(spread.nodes) == ["n1", "n2"]
    assert all(len(cores) == 1 for cores in spread.nodes.values())
    assert spread.total_cores == 2
    assert spread.wdir is not None and os.path.realpath(spread.wdir) == os.path.realpath(wd / "sub")
    assert isinstance(spread.time, timedelta) and spread.time >= timedelta(seconds=0.15)
    assert spread.exit_code == 0
    assert spread.history[0].endswith("QUEUED") and spread.history[-1].endswith("SUCCEED")
    assert spread.childs == []

    fail = parsed["fail"]
    assert fail.status == "FAILED" and fail.exit_code == 3

    it = parsed["it"]
    assert it.status == "SUCCEED"
    assert [c.name for c in it.childs] == ["it:0", "it:1", "it:2"]
    assert [c.iteration for c in it.childs] == [0, 1, 2]
    assert all(c.status == "SUCCEED" and c.exit_code == 0 and c.total_cores == 1 for c in it.childs)
    assert all(c.history[-1].endswith("SUCCEED") for c in it.childs)

    with pytest.raises(JobNotDefinedError):
        manager.info_parsed("nope")


# ---- cancel, remove, resources, system status ----


def test_cancel_kills_a_running_task(manager: LocalManager) -> None:
    manager.submit([{"name": "long", "execution": {"script": "sleep 30; echo not-reached"}}])
    wait_state(manager, "long", "EXECUTING")
    pid = task_pid(manager, "long")
    wait_for(lambda: bool(psutil.Process(pid).children(recursive=True)), 10, "the sleep to start")
    tree = [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]

    result = manager.cancel("long")
    assert result["canceled"] == 1
    assert manager.wait4("long", timeout=10) == {"long": "CANCELED"}  # long before its sleep 30 ends
    wait_for(lambda: all(gone(p) for p in tree), 10, "the canceled task's processes to end")
    # canceling again, or an unknown job, is an error
    with pytest.raises(ConnectionError):
        manager.cancel("long")
    with pytest.raises(ConnectionError):
        manager.cancel("nope")


def test_remove_finished_job_frees_its_name(manager: LocalManager) -> None:
    manager.submit([{"name": "a", "execution": {"exec": "/bin/true"}}, sleeper("run")])
    manager.wait4("a", timeout=15)
    assert manager.remove("a")["removed"] == 1
    assert "a" not in manager.list()
    assert manager.status("a")["jobs"]["a"]["status"] != 0
    assert manager.submit([{"name": "a", "execution": {"script": "exit 2"}}]) == ["a"]
    assert manager.wait4("a", timeout=15) == {"a": "FAILED"}  # the new job, not the old one
    # a job that still runs cannot be removed
    wait_state(manager, "run", "EXECUTING")
    with pytest.raises(ConnectionError, match="run"):
        manager.remove("run")
    assert "run" in manager.list()
    manager.cancel("run")
    manager.wait4("run", timeout=10)
    assert manager.remove(["run", "a"])["removed"] == 2
    assert manager.list() == {}


def test_resources_follow_running_jobs(manager: LocalManager) -> None:
    assert manager.resources() == {"total_nodes": 2, "total_cores": 4, "used_cores": 0, "free_cores": 4}
    manager.submit([sleeper("big", cores=3)])
    wait_for(lambda: manager.resources()["used_cores"] == 3, 10, "3 cores in use")
    assert manager.resources()["free_cores"] == 1
    manager.cancel("big")
    manager.wait4("big", timeout=10)
    wait_for(lambda: manager.resources()["used_cores"] == 0, 10, "the cores to be free")


def test_system_status(manager: LocalManager) -> None:
    manager.submit([{"name": "ok", "execution": {"exec": "/bin/true"}},
                    {"name": "bad", "execution": {"exec": "/bin/false"}}])
    manager.wait4(["ok", "bad"], timeout=15)
    st = manager.system_status()
    assert st["System"]["Zmqaddress"] == manager.address
    assert st["System"]["Pubaddress"] == manager.pub_address
    assert st["System"]["Pubaddress"].startswith("tcp://127.0.0.1:")
    assert st["Resources"]["total_cores"] == 4 and st["Resources"]["total_nodes"] == 2
    assert st["JobStats"]["TotalJobs"] == 2
    assert st["JobStats"]["FailedJobs"] == 1
    assert st["JobStats"]["FinishedJobs"] == 1
    assert st["JobStats"]["ExecutingJobs"] == 0
    # the raw request of the same, and the final-state helper
    raw = manager.send_request({"request": "status"})
    assert raw["code"] == 0 and raw["data"]["JobStats"]["TotalJobs"] == 2
    assert all(Manager.is_status_finished(s) for s in ("SUCCEED", "FAILED", "CANCELED", "OMITTED"))
    assert not any(Manager.is_status_finished(s) for s in ("QUEUED", "SCHEDULED", "EXECUTING"))


# ---- waiting ----


def test_wait4_timeout_raises_timeout_elapsed(manager: LocalManager) -> None:
    manager.submit([sleeper("long"), {"name": "quick", "execution": {"exec": "/bin/true"}}])
    t0 = time.monotonic()
    with pytest.raises(TimeoutElapsed):
        manager.wait4(["quick", "long"], timeout=0.5)
    assert time.monotonic() - t0 >= 0.5, "the wait gave up before its timeout"
    assert manager.wait4("quick", timeout=10) == {"quick": "SUCCEED"}
    with pytest.raises(JobNotDefinedError):
        manager.wait4("nope", timeout=1)
    manager.cancel("long")


def test_wait4_is_woken_by_events_not_by_polling(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the safety poll longer than the wait, wait4 asks for the job's state once, at its
    start; the job ends only after that answer, so wait4 can learn the end only from an event."""
    m = LocalManager(["--nodes", "2", "--wd", str(wd)], {**CFG, "safety_poll": 60})
    try:
        m.submit([{"name": "s", "execution": {"script": "while [ ! -e go ]; do sleep 0.01; done"}}])
        asked: List[str] = []
        send = m.send_request

        def spy(request: Dict[str, Any], *more: Any) -> Dict[str, Any]:
            answer = send(request, *more)
            if request.get("request") == "jobStatus":
                asked.append(answer["data"]["jobs"]["s"]["data"]["status"])
                (wd / "go").touch()  # the job ends after this answer
            return answer

        monkeypatch.setattr(m, "send_request", spy)
        assert m.wait4("s", timeout=30) == {"s": "SUCCEED"}
        assert len(asked) == 1 and asked[0] != "SUCCEED", f"wait4 learned the end by asking: {asked}"
    finally:
        stop_manager(m)


def test_wait4all(manager: LocalManager) -> None:
    manager.submit([{"name": "a", "execution": {"exec": "/bin/sleep", "args": ["0.2"]}},
                    {"name": "b", "execution": {"exec": "/bin/sleep", "args": ["0.3"]},
                     "dependencies": {"after": ["a"]}},
                    {"name": "c", "execution": {"exec": "/bin/false"}},
                    {"name": "d", "execution": {"exec": "/bin/true"}, "dependencies": {"after": ["c"]}}])
    manager.wait4all(timeout_secs=30)
    listing = manager.list()
    assert {n: e["status"] for n, e in listing.items()} == {
        "a": "SUCCEED", "b": "SUCCEED", "c": "FAILED", "d": "OMITTED"}
    manager.submit([sleeper("long")])
    with pytest.raises(TimeoutElapsed):
        manager.wait4all(timeout_secs=0.5)  # 'long' runs 30 s: only the timeout ends this wait
    manager.cancel("long")


def test_wait4_any_job_finish(manager: LocalManager) -> None:
    assert manager.wait4_any_job_finish(timeout_secs=1) == (None, None)  # nothing active
    manager.submit([sleeper("long"), {"name": "quick", "execution": {"exec": "/bin/sleep", "args": ["0.2"]}}])
    assert manager.wait4_any_job_finish(timeout_secs=20) == ("quick", "SUCCEED")
    # only 'long' is left: the timeout ends the wait with (None, None), as the docstring says
    assert manager.wait4_any_job_finish(timeout_secs=0.5) == (None, None)
    manager.cancel("long")
    assert manager.wait4_any_job_finish(timeout_secs=10) in (("long", "CANCELED"), (None, None))
    assert state(manager, "long") == "CANCELED"


# ---- finish and refusals ----


def test_finish_stops_the_service_and_kills_running_tasks(manager: LocalManager) -> None:
    manager.submit([sleeper("long")])
    wait_state(manager, "long", "EXECUTING")
    pid = task_pid(manager, "long")
    address_file = Path(manager.run_dir) / "address"
    assert json.loads(address_file.read_text())["pid"] == manager.process.pid
    manager.finish()
    assert manager.process.returncode is not None
    assert manager.process.returncode >= 0, "the service was terminated, it did not finish by itself"
    wait_for(lambda: gone(pid), 5, "the running task to be killed")
    assert not address_file.exists()
    with pytest.raises(ConnectionError):
        manager.status("long")
    final = json.loads((Path(manager.run_dir) / "final_status").read_text())
    assert final["jobs"] == {"CANCELED": 1}


def test_kill_manager_process(wd: Path) -> None:
    m = LocalManager(["--nodes", "2", "--wd", str(wd)], CFG)
    try:
        m.submit([sleeper("long")])
        wait_state(m, "long", "EXECUTING")
        pid = task_pid(m, "long")
        m.kill_manager_process()
        assert m.process.returncode is not None
        wait_for(lambda: gone(pid), 10, "the service's task to end with it")
    finally:
        stop_manager(m)


def test_refused_submit_raises_and_accepts_nothing(manager: LocalManager) -> None:
    with pytest.raises(ConnectionError, match="bad"):
        manager.submit([{"name": "good", "execution": {"exec": "/bin/true"}},
                        {"name": "bad", "execution": {}}])
    with pytest.raises(ConnectionError, match="ghost"):
        manager.submit([{"name": "good", "execution": {"exec": "/bin/true"},
                         "dependencies": {"after": ["ghost"]}}])
    assert manager.list() == {}
    assert manager.system_status()["JobStats"]["TotalJobs"] == 0
    # a name already known to the service
    manager.submit(Jobs().add(name="dup", exec="/bin/true"))
    with pytest.raises(ConnectionError, match="dup"):
        manager.submit(Jobs().add(name="other", exec="/bin/true").add(name="dup", exec="/bin/false"))
    assert manager.wait4("dup", timeout=10) == {"dup": "SUCCEED"}
    assert set(manager.list()) == {"dup"}


# ---- events ----


def test_events_are_published_to_a_raw_subscriber(manager: LocalManager) -> None:
    pub = manager.system_status()["System"]["Pubaddress"]
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(pub)
        assert sub.poll(5000), "no welcome from the event socket"
        sub.recv_multipart()  # the welcome: the subscription is live
        manager.submit([{"name": "ev", "execution": {"exec": "/bin/true"}}])
        seen: List[str] = []
        deadline = time.monotonic() + 15
        while "SUCCEED" not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"events seen for ev: {seen}"
            if not sub.poll(int(left * 1000)):
                continue
            frames = sub.recv_multipart()
            if len(frames) == 1 and frames[0][:4] in (b"JST ", b"JFI ", b"IST ", b"IFI ", b"NOJ "):
                continue  # QCG-PilotJob's events, one frame each (tests/integration/test_qcg_client.py)
            if len(frames) == 1 and frames[0].startswith(b"hpilot-welcome"):
                continue  # another subscriber's welcome
            assert len(frames) == 2, frames
            topic, body = frames
            event = json.loads(body)
            assert topic == event["event"].encode()
            if event.get("job") == "ev" and topic == b"job":
                assert isinstance(event["time"], float)
                seen.append(event["state"])
        assert seen == ["QUEUED", "EXECUTING", "SUCCEED"]
    finally:
        sub.close(0)
        ctx.term()


# ---- a task submits more work ----


def test_a_task_submits_more_work(manager: LocalManager, wd: Path) -> None:
    code = ("from hpilot.governor import Manager\n"
            "m = Manager()\n"
            "print(m.submit([{'name': 'child', 'execution': {'script': 'echo from-child > child.txt'}}]))\n"
            "m.cleanup()\n")
    script = ("env | grep -E '^(HPILOT_ADDRESS|QCG_PM_ZMQ_ADDRESS|HPILOT_CLIENT_KEY)=' | cut -d= -f1 | sort > env.txt\n"
              f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}")
    manager.submit([{"name": "parent", "execution": {"script": script, "stdout": "parent.out",
                                                     "stderr": "parent.err"}}])
    assert manager.wait4("parent", timeout=30) == {"parent": "SUCCEED"}, (wd / "parent.err").read_text()
    # on loopback no key is needed (off loopback tasks get HPILOT_CLIENT_KEY: tests/integration/test_curve.py)
    assert (wd / "env.txt").read_text().split() == ["HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS"]
    assert "child" in (wd / "parent.out").read_text()
    assert manager.wait4("child", timeout=15) == {"child": "SUCCEED"}
    assert (wd / "child.txt").read_text().strip() == "from-child"
    assert set(manager.list()) == {"parent", "child"}


# ---- the service dies with its parent ----


def test_service_dies_with_its_parent(wd: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        import time
        from hpilot.governor import LocalManager
        m = LocalManager(["--nodes", "2", "--wd", {str(wd)!r}], {{"init_timeout": 30}})
        m.submit([{{"name": "long", "execution": {{"exec": "/bin/sleep", "args": ["30"]}}}}])
        deadline = time.monotonic() + 20
        while m.status("long")["jobs"]["long"]["data"]["status"] != "EXECUTING":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pid = m.info("long")["jobs"]["long"]["data"]["runtime"]["pid"]
        print(m.process.pid, pid, m.run_dir, flush=True)
        sys.stdin.read()  # blocks until the test kills this process
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                              text=True)
    service_pid: Optional[int] = None
    task: Optional[int] = None
    try:
        assert parent.stdout is not None
        ready, _, _ = select.select([parent.stdout], [], [], 30)
        assert ready, "the parent did not start its LocalManager"
        line = parent.stdout.readline().split()
        assert len(line) == 3, f"parent said {line!r}, exit {parent.poll()}"
        service_pid, task, run_dir = int(line[0]), int(line[1]), Path(line[2])
        assert json.loads((run_dir / "address").read_text())["pid"] == service_pid
        assert psutil.Process(service_pid).ppid() == parent.pid
        assert not gone(service_pid) and not gone(task)

        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: gone(service_pid), 15, "the service to exit after its parent died")
        wait_for(lambda: gone(task), 10, "the service's task to be killed")
        final = json.loads((run_dir / "final_status").read_text())
        assert final["stopped_by"] == "parent exit"
        assert not (run_dir / "address").exists()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        for stream in (parent.stdout, parent.stdin):
            if stream is not None:
                stream.close()
        for pid in (service_pid, task):
            if pid is not None and not gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# ---- connecting ----


def test_manager_finds_the_service_from_env_and_working_directory(manager: LocalManager, wd: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS", "HPILOT_CLIENT_KEY"):
        monkeypatch.delenv(var, raising=False)
    manager.submit([{"name": "j", "execution": {"exec": "/bin/true"}}])
    manager.wait4("j", timeout=10)
    monkeypatch.chdir(wd)  # .hpilot/latest/address of the service started here
    found = Manager(cfg=CFG)
    try:
        assert found.address == manager.address
        assert found.pub_address == manager.pub_address
        assert found.status("j")["jobs"]["j"]["data"]["status"] == "SUCCEED"
    finally:
        found.cleanup()
    monkeypatch.chdir(wd.parent)
    for var in ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS"):
        monkeypatch.setenv(var, manager.address)
        via_env = Manager(cfg=CFG)
        try:
            assert via_env.list()["j"]["status"] == "SUCCEED"
        finally:
            via_env.cleanup()
        monkeypatch.delenv(var)
    bare = Manager(manager.address.removeprefix("tcp://"), CFG)  # QCG's [proto://]host[:port]
    try:
        assert bare.address == manager.address and bare.resources()["total_cores"] == 4
    finally:
        bare.cleanup()


def test_local_manager_with_bad_arguments_raises_service_error(wd: Path) -> None:
    from hpilot.governor import ServiceError

    with pytest.raises(ServiceError, match="exited with status 2 before listening"):  # not its start timeout
        m = LocalManager(["--nodes", "not-a-node-spec!", "--wd", str(wd)], CFG)
        stop_manager(m)


def test_local_manager_without_publisher_still_waits(wd: Path) -> None:
    m = LocalManager(["--nodes", "2", "--wd", str(wd), "--disable-pub"], CFG)
    try:
        assert m.pub_address is None
        assert m.system_status()["System"]["Pubaddress"] is None
        m.submit([{"name": "j", "execution": {"exec": "/bin/sleep", "args": ["0.2"]}}])
        assert m.wait4("j", timeout=20) == {"j": "SUCCEED"}
    finally:
        stop_manager(m)


# ---- Executor ----


def test_executor_basic_template(wd: Path) -> None:
    with executor(wd) as e:
        f = e.submit(BasicTemplate.template, name="tj", exec="echo", args=["hello", "there"])
        assert isinstance(f, HPilotFuture)
        assert f.result(timeout=30) == {"tj": "SUCCEED"}
        assert f.done() and not f.running() and not f.cancelled()
        assert (wd / "stdout").read_text().strip() == "hello there"  # BasicTemplate's default stdout
        g = e.submit(BasicTemplate.template, name="tf", exec="false")
        with pytest.raises(TaskFailedError, match="tf FAILED: exit code 1"):
            g.result(timeout=30)
        assert g.statuses() == {"tf": "FAILED"}
        with pytest.raises(InvalidJobDescriptionError, match="exec"):
            e.submit(BasicTemplate.template, name="missing-exec")


def test_executor_custom_template_precedence(wd: Path) -> None:
    def template() -> Tuple[str, Dict[str, Any]]:
        text = """
        {
            'name': '${name}',
            'execution': {'script': 'echo ${a} ${b} ${c} ${d} > ${name}.txt'},
            'resources': {'numCores': {'exact': ${cores}}}
        }
        """
        return text, {"a": "A0", "b": "B0", "c": "C0", "d": "D0", "cores": 1}

    with executor(wd) as e:
        f = e.submit(template, {"b": "B1", "c": "C1", "d": "D1"}, {"d": "D2"}, c="C3", name="t1", cores=2)
        assert f.result(timeout=30) == {"t1": "SUCCEED"}
        # defaults < positional dicts (later ones win) < keyword arguments
        assert (wd / "t1.txt").read_text().split() == ["A0", "B1", "C3", "D2"]
        assert e.manager.info_parsed("t1")["t1"].total_cores == 2
        g = e.submit(template, name="t2")
        assert g.result(timeout=30) == {"t2": "SUCCEED"}
        assert (wd / "t2.txt").read_text().split() == ["A0", "B0", "C0", "D0"]


def test_executor_command_shortcut(wd: Path) -> None:
    with executor(wd) as e:
        f = e.submit("echo shortcut > sc.txt; echo $QCG_PM_NPROCS > np.txt", numCores=2)
        result = f.result(timeout=30)
        assert list(result.values()) == ["SUCCEED"]
        assert f.names == list(result)
        assert (wd / "sc.txt").read_text().strip() == "shortcut"
        assert (wd / "np.txt").read_text().strip() == "2"
        named = e.submit("echo giving up >&2; exit 4", name="named")
        err = named.exception(timeout=30)
        assert isinstance(err, TaskFailedError)
        assert (err.job, err.iteration, err.state, err.exit_code, err.stderr) == ("named", None, "FAILED", 4,
                                                                                  "giving up")
        assert err.statuses == named.statuses() == {"named": "FAILED"}


def test_executor_futures_with_as_completed_and_wait(wd: Path) -> None:
    with executor(wd, "4") as e:
        durations = [1.5, 0.1, 0.3, 0.0]
        futures = [e.submit(f"sleep {d}; echo {i} > f{i}.txt", name=f"f{i}") for i, d in enumerate(durations)]
        failing = e.submit("exit 1", name="bad")
        completed: List[concurrent.futures.Future] = []
        for fut in concurrent.futures.as_completed([*futures, failing], timeout=30):
            completed.append(fut)
        assert set(completed) == {*futures, failing}
        # the longest sleep finishes after the shortest one
        assert completed.index(futures[0]) > completed.index(futures[3])
        assert [f.result() for f in futures] == [{f"f{i}": "SUCCEED"} for i in range(4)]
        assert isinstance(failing.exception(), TaskFailedError) and failing.statuses() == {"bad": "FAILED"}
        more = [e.submit("sleep 0.2", name=f"w{i}") for i in range(3)]
        done, not_done = concurrent.futures.wait(more, timeout=30)
        assert done == set(more) and not not_done
        assert all(f.result() == {f"w{i}": "SUCCEED"} for i, f in enumerate(more))
        assert sorted(p.name for p in wd.glob("f*.txt")) == ["f0.txt", "f1.txt", "f2.txt", "f3.txt"]


def test_executor_cancel_running_future(wd: Path) -> None:
    with executor(wd) as e:
        f = e.submit("sleep 30", name="long")
        wait_for(f.running, 15, "the future to run")
        pid = task_pid(e.manager, "long")
        assert f.cancel()
        assert f.cancelled() and f.done()
        with pytest.raises(concurrent.futures.CancelledError):
            f.result(timeout=1)
        assert e.manager.wait4("long", timeout=10) == {"long": "CANCELED"}  # before its sleep 30 ends
        wait_for(lambda: gone(pid), 10, "the canceled task to end")
        done = e.submit("true", name="after")
        assert done.result(timeout=30) == {"after": "SUCCEED"}
        assert not done.cancel()  # a finished future cannot be canceled


def test_executor_context_manager_shuts_the_service_down(wd: Path) -> None:
    e = Executor(str(wd), "2")
    proc = e.manager.process
    try:
        with e:
            f = e.submit("sleep 0.3", name="s")
            assert proc.poll() is None
        # leaving the block waited for the future, then finished the service
        assert f.done() and f.result() == {"s": "SUCCEED"}
        assert proc.poll() is not None
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            e.manager.kill_manager_process()


def test_executor_failure_names_the_iteration_exit_code_reason_and_stderr(wd: Path) -> None:
    def sweep() -> Tuple[str, Dict[str, Any]]:
        return ("""{'name': '${name}', 'iteration': {'stop': 4},
                    'execution': {'script': 'echo it $${it} >&2; [ $${it} != 2 ] || exit 7'}}""", {})

    def slow() -> Tuple[str, Dict[str, Any]]:
        return "{'name': '${name}', 'execution': {'exec': '/bin/sleep', 'args': ['30']}, 'wt': '1s'}", {}

    with executor(wd, "4") as e:
        err = e.submit(sweep, name="sw").exception(timeout=30)
        assert isinstance(err, TaskFailedError)
        assert (err.job, err.iteration, err.exit_code, err.reason, err.stderr) == ("sw", 2, 7, None, "it 2")
        assert str(err) == "sw:2 FAILED: exit code 7; it 2"
        timed = e.submit(slow, name="slow").exception(timeout=30)
        assert isinstance(timed, TaskFailedError) and "wall time of 1s exceeded" in (timed.reason or "")
        # a job that never ran: OMITTED, with the reason from the service
        first = e.submit("exit 1", name="first")
        then = e.submit("true", name="then", after=["first"])
        omitted = then.exception(timeout=30)
        assert isinstance(omitted, TaskFailedError) and omitted.state == "OMITTED" and omitted.exit_code is None
        assert "first" in (omitted.reason or "") and isinstance(first.exception(), TaskFailedError)
        # canceled in the service (not through the future): it fails, it is not the future's cancel
        long = e.submit("sleep 30", name="long")
        wait_for(long.running, 15, "long to run")
        e.manager.cancel("long")
        canceled = long.exception(timeout=30)
        assert isinstance(canceled, TaskFailedError) and canceled.state == "CANCELED" and not long.cancelled()


README_EXECUTOR = re.compile(r"The Executor works like `concurrent.futures`.*?```python\n(.*?)```", re.S)


def test_the_readme_executor_example_behaves(tmp_path: Path) -> None:
    """The README's Executor example, run as written, against a ./simulate that fails for one seed."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    m = README_EXECUTOR.search(readme.read_text())
    assert m, "the README has no Executor example"
    sim = tmp_path / "simulate"
    sim.write_text('#!/bin/sh\nif [ "$2" = 3 ]; then echo "diverged at seed $2" >&2; exit 2; fi\necho ok\n')
    sim.chmod(0o755)
    (tmp_path / "example.py").write_text(m.group(1))
    proc = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert sum("SUCCEED" in ln for ln in lines) == 10  # date and the 9 good seeds
    failed = [ln for ln in lines if "failed" in ln]
    assert len(failed) == 1 and "exit code 2" in failed[0] and "diverged at seed 3" in failed[0], lines
