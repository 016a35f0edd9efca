"""The client commands (``hpilot submit|status|info|list|cancel|remove|resources|wait|finish``)
against a real ``hpilot service --net`` started in a temporary working directory.

The fixture starts the service with ``subprocess.Popen``, reads its banner line,
and always stops it (``finish``, then a kill).  Every command runs as a real
subprocess with a timeout and must never show a Python traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import zmq

from tests.conftest import HPILOT, wait_for, write_requests

pytestmark = pytest.mark.integration

BANNER = re.compile(r"^hpilot: service listening on (\S+?)(?:, events (\S+))?; run dir (.+)$")
ENV_KEYS = ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS", "HPILOT_CLIENT_KEY")
TIMEOUT = 30.0


def clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(extra)
    return env


def hp(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None,
       timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run an hpilot command; it must never show a traceback."""
    proc = subprocess.run(HPILOT + args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else clean_env(), stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stdout + proc.stderr, describe(proc)
    return proc


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, describe(proc)
    return str(proc.stdout)


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, describe(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hpilot: error: "), describe(proc)
    return lines[0]


def as_json(proc: subprocess.CompletedProcess) -> Any:
    return json.loads(ok(proc))


# ---- the service ----


@dataclass
class Service:
    proc: subprocess.Popen
    address: str
    pub: Optional[str]
    run_dir: Path
    wd: Path


def ask(address: str, payload: Dict[str, Any], timeout: float = 5) -> Optional[Dict[str, Any]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        sock.send_json(payload)
        if not sock.poll(int(timeout * 1000)):
            return None
        answer = sock.recv_json()
        return answer if isinstance(answer, dict) else None
    finally:
        sock.close(0)


def start_service(wd: Path, *extra: str) -> Service:
    wd.mkdir(parents=True, exist_ok=True)
    out = wd.parent / "service.out"
    with open(out, "w") as fo, open(wd.parent / "service.err", "w") as fe:
        proc = subprocess.Popen(HPILOT + ["service", "--net", "--nodes", "2", "--wd", str(wd), *extra], cwd=wd,
                                stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, env=clean_env())
    try:
        wait_for(lambda: "\n" in out.read_text() or proc.poll() is not None, 30, "the service's banner")
        text = out.read_text()
        m = BANNER.match(text.splitlines()[0] if text else "")
        assert m, f"banner {text!r}; exit {proc.poll()}"
    except BaseException:
        stop_service_proc(proc, None)
        raise
    return Service(proc, m.group(1), m.group(2), Path(m.group(3)), wd)


def stop_service_proc(proc: subprocess.Popen, address: Optional[str]) -> None:
    if proc.poll() is None and address is not None:
        ask(address, {"request": "finish"})
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def service(wd: Path) -> Iterator[Service]:
    svc = start_service(wd)
    try:
        yield svc
    finally:
        stop_service_proc(svc.proc, svc.address)


def job(name: str, script: str, **more: Any) -> Dict[str, Any]:
    return {"name": name, "execution": {"script": script}, **more}


def states(svc: Service) -> Dict[str, str]:
    listing = as_json(hp(["list", "--json"], svc.wd))
    return {n: e["status"] for n, e in listing.items()}


def submit_file(svc: Service, jobs: List[Dict[str, Any]], name: str = "jobs.json") -> List[str]:
    path = svc.wd / name
    path.write_text(json.dumps(jobs))
    return list(as_json(hp(["submit", name, "--json"], svc.wd)))


def wait_all(svc: Service, timeout: float = 20) -> None:
    hp(["wait", "--timeout", str(timeout)], svc.wd, timeout=timeout + 15)


# ---- submit ----


def test_submit_request_file_and_job_list(service: Service) -> None:
    write_requests(service.wd / "reqs.json", [
        {"request": "submit", "jobs": [job("a", "touch a.txt"), job("b", "touch b.txt",
                                                                    dependencies={"after": ["a"]})]},
        {"request": "submit", "jobs": [job("c", "touch c.txt")]},
    ])
    out = ok(hp(["submit", "reqs.json"], service.wd))
    assert "3 job(s) submitted" in out and all(n in out for n in ("a", "b", "c"))

    (service.wd / "list.json").write_text(json.dumps([job("d", "touch d.txt"), job("e", "touch e.txt")]))
    assert as_json(hp(["submit", "list.json", "--json"], service.wd)) == ["d", "e"]

    assert ok(hp(["wait", "--timeout", "20"], service.wd, timeout=35)).startswith("5 job(s) finished: 5 SUCCEED")
    for n in "abcde":
        assert (service.wd / f"{n}.txt").exists()
    assert states(service) == {n: "SUCCEED" for n in "abcde"}


def test_submit_bad_files_are_clear_errors(service: Service) -> None:
    line = one_error_line(hp(["submit", "missing.json"], service.wd))
    assert "missing.json" in line
    (service.wd / "bad.json").write_text(json.dumps([{"name": "x", "execution": {}}]))
    assert "execution" in one_error_line(hp(["submit", "bad.json"], service.wd))
    (service.wd / "ghost.json").write_text(json.dumps([job("y", "true", dependencies={"after": ["ghost"]})]))
    refused = hp(["submit", "ghost.json"], service.wd)  # refused by the service: its message, may be long
    assert refused.returncode == 2, describe(refused)
    assert refused.stderr.startswith("hpilot: error: ") and "ghost" in refused.stderr, describe(refused)
    assert states(service) == {}


# ---- status, list, info ----


def test_status_all_and_named(service: Service) -> None:
    submit_file(service, [job("good", "true"), job("bad", "exit 3")])
    wait_all(service)
    table = ok(hp(["status"], service.wd))
    assert re.search(r"^iterations:\s+2: 1 succeeded, 1 failed$", table, re.M), table
    assert re.search(r"^JOB\s+STATE\s+SUCCEEDED\s+OTHER\s+MESSAGE$", table, re.M), table
    assert re.search(r"^good\s+SUCCEED\s+1/1", table, re.M)
    assert re.search(r"^bad\s+FAILED\s+0/1\s+1 failed", table, re.M)
    overview = as_json(hp(["status", "--json"], service.wd))
    assert overview["iterations"]["succeeded"] == 1 and overview["iterations"]["failed"] == 1
    assert {j["name"] for j in overview["list"]} == {"good", "bad"}

    named = ok(hp(["status", "good"], service.wd))
    assert re.search(r"^good\s+SUCCEED", named, re.M) and "bad" not in named
    data = as_json(hp(["status", "good", "bad", "--json"], service.wd))
    assert data["good"]["status"] == "SUCCEED" and data["bad"]["status"] == "FAILED"
    assert data["bad"]["counts"]["failed"] == 1 and "exit code 3" in data["bad"]["message"]

    unknown = hp(["status", "good", "nope"], service.wd)
    assert unknown.returncode == 2, describe(unknown)
    assert re.search(r"^nope\s+UNKNOWN", unknown.stdout, re.M)
    assert "does not exist" in unknown.stdout
    assert json.loads(hp(["status", "nope", "--json"], service.wd).stdout)["nope"]["status"] == "UNKNOWN"


def test_list_with_state_filter(service: Service) -> None:
    submit_file(service, [job("good", "true"), job("bad", "exit 1"), job("it", "true", iteration={"stop": 3})])
    wait_all(service)
    assert set(as_json(hp(["list", "--json"], service.wd))) == {"good", "bad", "it"}
    failed = as_json(hp(["list", "--state", "FAILED", "--json"], service.wd))
    assert list(failed) == ["bad"]
    both = as_json(hp(["list", "--state", "failed", "--state", "SUCCEED", "--json"], service.wd))
    assert set(both) == {"good", "bad", "it"}
    assert as_json(hp(["list", "--state", "CANCELED", "--json"], service.wd)) == {}
    table = ok(hp(["list", "--state", "SUCCEED"], service.wd))
    assert re.search(r"^it\s+SUCCEED\s+3/3", table, re.M) and "bad" not in table


def test_info_and_iterations(service: Service) -> None:
    submit_file(service, [job("one", "exit 0"), job("it", "true", iteration={"stop": 2})])
    wait_all(service)
    text = ok(hp(["info", "one"], service.wd))
    assert re.search(r"^state:\s+SUCCEED", text, re.M)
    assert re.search(r"^allocation:\s+\S+\[\d+\]", text, re.M)
    assert re.search(r"^exit code:\s+0", text, re.M)
    assert "QUEUED" in text and "SUCCEED" in text
    data = as_json(hp(["info", "one", "--json"], service.wd))
    assert data["jobName"] == "one" and data["runtime"]["exit_code"] == "0"

    plain = as_json(hp(["info", "it", "--json"], service.wd))
    assert "childs" not in plain and plain["iterations"]["total"] == 2
    full = as_json(hp(["info", "it", "--iterations", "--json"], service.wd))
    assert [c["iteration"] for c in full["childs"]] == [0, 1]
    text = ok(hp(["info", "it", "--iterations"], service.wd))
    assert re.search(r"^\s+\[0\] SUCCEED", text, re.M) and re.search(r"^\s+\[1\] SUCCEED", text, re.M)

    assert "nope" in one_error_line(hp(["info", "nope"], service.wd))


# ---- cancel, remove, resources ----


def test_cancel(service: Service) -> None:
    submit_file(service, [job("long", "sleep 30; true"), job("after", "true", dependencies={"after": ["long"]})])
    wait_for(lambda: states(service)["long"] == "EXECUTING", 15, "long to run")
    out = ok(hp(["cancel", "long"], service.wd))
    assert "1 job(s) canceled" in out
    wait_for(lambda: states(service)["long"] == "CANCELED", 10, "long to be canceled")  # before its sleep 30
    assert states(service)["after"] == "OMITTED"
    submit_file(service, [job("queued", "true", dependencies={"after": ["late"]}), job("late", "sleep 30; true")],
                name="more.json")
    data = as_json(hp(["cancel", "queued", "late", "--json"], service.wd))
    assert data["canceled"] == 2
    wait_for(lambda: states(service)["late"] == "CANCELED", 10, "late to be canceled")


def test_cancel_errors_name_the_job(service: Service) -> None:
    submit_file(service, [job("finished-job", "true")])
    wait_all(service)
    line = one_error_line(hp(["cancel", "no-such-job"], service.wd))
    assert "no-such-job" in line, line
    line = one_error_line(hp(["cancel", "finished-job"], service.wd))
    assert "finished-job" in line, line


def test_remove(service: Service) -> None:
    submit_file(service, [job("a", "true"), job("long", "sleep 30; true")])
    wait_for(lambda: states(service) == {"a": "SUCCEED", "long": "EXECUTING"}, 15, "a done, long running")
    assert "1 job(s) removed" in ok(hp(["remove", "a"], service.wd))
    assert set(states(service)) == {"long"}
    assert hp(["status", "a"], service.wd).returncode == 2
    line = one_error_line(hp(["remove", "long"], service.wd))
    assert "long" in line
    ok(hp(["cancel", "long"], service.wd))
    wait_for(lambda: states(service)["long"] == "CANCELED", 10, "long to be canceled")
    assert as_json(hp(["remove", "long", "--json"], service.wd)) == {"removed": 1}
    assert states(service) == {}
    assert "nope" in one_error_line(hp(["remove", "nope"], service.wd))


def test_resources(service: Service) -> None:
    text = ok(hp(["resources"], service.wd))
    assert re.search(r"nodes:\s+1\s+cores:\s+2\s+used:\s+0\s+free:\s+2", text), text
    submit_file(service, [{"name": "two", "execution": {"script": "sleep 30; true"},
                           "resources": {"numCores": {"exact": 2}}}])
    wait_for(lambda: as_json(hp(["resources", "--json"], service.wd))["used_cores"] == 2, 15, "2 cores used")
    assert as_json(hp(["resources", "--json"], service.wd)) == {
        "total_nodes": 1, "total_cores": 2, "used_cores": 2, "free_cores": 0}
    ok(hp(["cancel", "two"], service.wd))


# ---- wait ----


def test_wait_exit_status(service: Service) -> None:
    submit_file(service, [job("s1", "sleep 0.3"), job("s2", "true")])
    proc = hp(["wait"], service.wd)
    assert proc.returncode == 0, describe(proc)
    assert "2 job(s) finished: 2 SUCCEED" in proc.stdout
    waited = as_json(hp(["wait", "s1", "--json"], service.wd))
    assert waited["jobs"] == {"s1": "SUCCEED"} and waited["iterations"]["succeeded"] == 1

    submit_file(service, [job("f1", "sleep 0.2; exit 5"), job("s3", "true")], name="more.json")
    proc = hp(["wait", "f1", "s3"], service.wd)
    assert proc.returncode == 1, describe(proc)
    assert re.search(r"f1: FAILED", proc.stdout)
    proc = hp(["wait", "--json"], service.wd)  # all jobs
    assert proc.returncode == 1, describe(proc)
    assert json.loads(proc.stdout)["jobs"] == {"s1": "SUCCEED", "s2": "SUCCEED", "f1": "FAILED", "s3": "SUCCEED"}


def test_wait_timeout(service: Service) -> None:
    submit_file(service, [job("long", "sleep 30; true"), job("quick", "true")])
    proc = hp(["wait", "--timeout", "0.5"], service.wd)  # 'long' runs 30 s: only the timeout ends this wait
    assert proc.returncode == 124, describe(proc)  # as GNU timeout; 3 is an internal error
    assert "still running: long" in proc.stderr
    proc = hp(["wait", "quick", "--timeout", "10"], service.wd)
    assert proc.returncode == 0, describe(proc)
    ok(hp(["cancel", "long"], service.wd))


# ---- finish ----


def test_finish(service: Service) -> None:
    submit_file(service, [job("long", "sleep 30; true")])
    wait_for(lambda: states(service)["long"] == "EXECUTING", 15, "long to run")
    assert "finishing" in ok(hp(["finish"], service.wd))
    assert service.proc.wait(15) is not None
    assert not (service.run_dir / "address").exists()
    final = json.loads((service.run_dir / "final_status").read_text())
    assert final["jobs"] == {"CANCELED": 1}
    # nothing to talk to any more: one clear line
    line = one_error_line(hp(["status"], service.wd))
    assert "no running hpilot service" in line


# ---- finding the service ----


def test_explicit_address_and_environment(service: Service, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    submit_file(service, [job("j", "true")])
    wait_all(service)
    # an empty directory: found through --address
    data = as_json(hp(["list", "--address", service.address, "--json"], elsewhere))
    assert data["j"]["status"] == "SUCCEED"
    # QCG-PilotJob's address form without the protocol is accepted too
    bare = service.address.removeprefix("tcp://")
    assert as_json(hp(["list", "--address", bare, "--json"], elsewhere))["j"]["status"] == "SUCCEED"
    # through HPILOT_ADDRESS, and QCG's QCG_PM_ZMQ_ADDRESS
    for var in ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS"):
        env = clean_env(**{var: service.address})
        assert as_json(hp(["resources", "--json"], elsewhere, env=env))["total_cores"] == 2
    # --address wins over the environment
    env = clean_env(HPILOT_ADDRESS="tcp://127.0.0.1:1")
    assert as_json(hp(["resources", "--address", service.address, "--json"], elsewhere, env=env))["total_cores"] == 2


def test_found_from_the_working_directory(service: Service) -> None:
    latest = service.wd / ".hpilot" / "latest"
    assert latest.resolve() == service.run_dir.resolve()
    assert json.loads((latest / "address").read_text())["address"] == service.address
    assert as_json(hp(["resources", "--json"], service.wd))["total_cores"] == 2
    sub = service.wd / "sub"  # not from another directory, even below it
    sub.mkdir()
    assert "no running hpilot service" in one_error_line(hp(["resources"], sub))


@pytest.mark.parametrize("command", [["status"], ["list"], ["info", "x"], ["cancel", "x"], ["remove", "x"],
                                     ["resources"], ["wait"], ["finish"]])
def test_no_service_is_a_clear_error(tmp_path: Path, command: List[str]) -> None:
    line = one_error_line(hp(command, tmp_path))
    assert "no running hpilot service found" in line


def test_no_service_submit_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "jobs.json").write_text(json.dumps([job("x", "true")]))
    assert "no running hpilot service found" in one_error_line(hp(["submit", "jobs.json"], tmp_path))


def test_killed_service_is_a_quick_clear_error(wd: Path) -> None:
    """A service killed without a chance to clean up leaves its address file behind;
    the client must not wait on it as if it still ran (the file holds the service's pid)."""
    svc = start_service(wd)
    try:
        pid = json.loads((svc.run_dir / "address").read_text())["pid"]
        assert pid == svc.proc.pid
        os.kill(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait(10)
        assert (svc.run_dir / "address").exists()
        proc = hp(["status"], wd, timeout=60)
        # the dead pid is noticed at once: not "no answer from ... in 30s" after waiting on the address
        assert "no running hpilot service found" in one_error_line(proc)
    finally:
        with contextlib.suppress(Exception):
            stop_service_proc(svc.proc, None)
