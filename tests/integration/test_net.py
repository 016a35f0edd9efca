"""The service's ZeroMQ interface, spoken to as a QCG-PilotJob client would: raw JSON
requests on a REQ socket, QCG-shaped answers (``code``/``message``/``data``).

Every test starts a real ``hpilot service --net`` in a temporary working directory
and always stops it (a ``finish`` request, then a kill).  Also here: bad frames,
clients that vanish, plain JSON on loopback, port choice,
and 100 clients at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import zmq

from tests.conftest import HPILOT, wait_for, wait_for_progress

pytestmark = pytest.mark.integration

BANNER = re.compile(r"^hpilot: service listening on (\S+?)(?:, events (\S+))?; run dir (.+)$")
ENV_KEYS = ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS", "HPILOT_CLIENT_KEY")


# ---- a real service ----


@dataclass
class Service:
    proc: subprocess.Popen
    address: str  # as printed (may be tcp://0.0.0.0:PORT)
    pub: Optional[str]
    run_dir: Path
    wd: Path
    out: Path
    err: Path

    @property
    def connect(self) -> str:
        """The address a client on this host connects to."""
        return self.address.replace("0.0.0.0", "127.0.0.1")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def log(self) -> str:
        return (self.run_dir / "service.log").read_text()


def clean_env() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ENV_KEYS}


def start_service(wd: Path, *extra: str, nodes: str = "2") -> Service:
    wd.mkdir(parents=True, exist_ok=True)
    out, err = wd.parent / f"{wd.name}.out", wd.parent / f"{wd.name}.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(HPILOT + ["service", "--net", "--nodes", nodes, "--wd", str(wd), *extra],
                                cwd=wd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, env=clean_env())
    try:
        wait_for(lambda: "\n" in out.read_text() or proc.poll() is not None, 30, "the service's banner")
        line = out.read_text().splitlines()[0] if out.read_text() else ""
        m = BANNER.match(line)
        assert m, f"banner {line!r}; exit {proc.poll()}; stderr {err.read_text()}"
    except BaseException:
        stop(proc)
        raise
    return Service(proc, m.group(1), m.group(2), Path(m.group(3)), wd, out, err)


def stop(proc: subprocess.Popen, address: Optional[str] = None) -> None:
    if proc.poll() is None and address is not None:
        with contextlib.suppress(AssertionError):
            ask(address, {"request": "finish"}, timeout=5)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def stop_service(svc: Service) -> None:
    stop(svc.proc, svc.connect)


@pytest.fixture
def service(wd: Path) -> Iterator[Service]:
    svc = start_service(wd)
    try:
        yield svc
    finally:
        stop_service(svc)


# ---- a raw QCG-style client ----


CTX: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()


def ask(address: str, payload: Any, timeout: float = 10) -> Dict[str, Any]:
    """One request on a fresh REQ socket, as QCG-PilotJob's client sends it."""
    sock = CTX.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        sock.send(json.dumps(payload).encode())
        assert sock.poll(int(timeout * 1000)), f"no answer to {str(payload)[:100]} in {timeout}s"
        answer = json.loads(sock.recv())
        assert isinstance(answer, dict) and isinstance(answer.get("code"), int), answer
        return answer
    finally:
        sock.close(0)


def send_raw(address: str, frames: List[bytes], kind: int = zmq.REQ, timeout: float = 5) -> Optional[List[bytes]]:
    """Send frames as they are; the answer's frames, or None when none came."""
    sock = CTX.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        sock.send_multipart(frames)
        if not sock.poll(int(timeout * 1000)):
            return None
        return sock.recv_multipart()
    finally:
        sock.close(0)


def job_state(address: str, name: str) -> str:
    answer = ask(address, {"request": "jobStatus", "jobNames": [name]})
    entry = answer["data"]["jobs"][name]
    return str(entry["data"]["status"]) if entry["status"] == 0 else "UNKNOWN"


def wait_state(address: str, name: str, wanted: str, timeout: float = 15) -> None:
    wait_for(lambda: job_state(address, name) == wanted, timeout, f"{name} to be {wanted}")


def still_serving(svc: Service) -> None:
    assert svc.proc.poll() is None, f"the service exited: {svc.err.read_text()}"
    answer = ask(svc.connect, {"request": "resourcesInfo"})
    assert answer["code"] == 0 and answer["data"]["total_cores"] == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- QCG-PilotJob's requests and answers (manual ch. 10) ----


def test_qcg_requests_get_qcg_shaped_answers(service: Service) -> None:
    addr = service.connect
    submit = {
        "request": "submit",
        "jobs": [{
            "name": "msleep2",
            "execution": {
                "exec": "/bin/sleep",
                "args": ["0.3"],
                "env": {},
                "wd": "sleep.sandbox",
                "stdout": "sleep2.${ncores}.${nnodes}.stdout",
                "stderr": "sleep2.${ncores}.${nnodes}.stderr",
            },
            "resources": {"numCores": {"exact": 2}},
        }],
    }
    assert ask(addr, submit) == {"code": 0, "message": "1 jobs submitted",
                                 "data": {"submitted": 1, "jobs": ["msleep2"]}}

    listing = ask(addr, {"request": "listJobs"})
    assert listing["code"] == 0
    assert listing["data"]["length"] == 1
    assert listing["data"]["jobs"]["msleep2"]["status"] in ("QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED")

    wait_state(addr, "msleep2", "SUCCEED")
    status = ask(addr, {"request": "jobStatus", "jobNames": ["msleep2"]})
    assert status == {"code": 0, "data": {"jobs": {"msleep2": {
        "status": 0, "data": {"jobName": "msleep2", "status": "SUCCEED"}}}}}

    unknown = ask(addr, {"request": "jobInfo", "jobNames": ["msleep2", "echo"]})
    # an unknown job fails the whole request, as in QCG-PilotJob (the per-job entries stay in data)
    assert unknown["code"] == 1 and unknown["message"] == "Job 'echo' doesn't exist"
    assert unknown["data"]["jobs"]["echo"]["status"] != 0
    info = ask(addr, {"request": "jobInfo", "jobNames": ["msleep2"]})
    assert info["code"] == 0
    data = info["data"]["jobs"]["msleep2"]["data"]
    assert data["jobName"] == "msleep2" and data["status"] == "SUCCEED"
    assert re.fullmatch(r"[^\[]+\[\d+:\d+\]", data["runtime"]["allocation"]), data["runtime"]
    assert data["runtime"]["wd"].endswith("sleep.sandbox")
    assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", data["runtime"]["rtime"])
    assert data["runtime"]["exit_code"] == "0"
    history = [h for h in data["history"].split("\n") if h]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: QUEUED", history[0])
    assert history[-1].endswith(": SUCCEED")
    assert (service.wd / "sleep.sandbox" / "sleep2.2.1.stdout").exists()

    assert ask(addr, {"request": "resourcesInfo"}) == {
        "code": 0, "data": {"total_nodes": 1, "total_cores": 2, "used_cores": 0, "free_cores": 2}}
    st = ask(addr, {"request": "status"})
    assert st["code"] == 0 and st["data"]["System"]["Zmqaddress"] == service.address
    assert st["data"]["JobStats"]["TotalJobs"] == 1

    removed = ask(addr, {"request": "removeJob", "jobNames": ["msleep2"]})
    assert removed["code"] == 0 and removed["data"] == {"removed": 1}
    assert ask(addr, {"request": "listJobs"})["data"] == {"length": 0, "jobs": {}}
    gone = ask(addr, {"request": "cancelJob", "jobNames": ["msleep2"]})
    assert gone["code"] == 0 and "doesn't exist" in gone["data"]["errors"]["msleep2"]  # QCG: errors in data

    assert ask(addr, {"request": "finish"})["code"] == 0
    assert service.proc.wait(10) == 0
    assert not (service.run_dir / "address").exists()


def test_cancel_and_control_requests(service: Service) -> None:
    addr = service.connect
    ask(addr, {"request": "submit", "jobs": [
        {"name": "long", "execution": {"exec": "/bin/sleep", "args": ["30"]}},
        {"name": "short", "execution": {"exec": "/bin/sleep", "args": ["0.5"]}},
        {"name": "after", "execution": {"exec": "/bin/true"}, "dependencies": {"after": ["long"]}},
    ]})
    wait_state(addr, "long", "EXECUTING")
    canceled = ask(addr, {"request": "cancelJob", "jobNames": ["long"]})
    assert canceled["code"] == 0, canceled
    wait_state(addr, "long", "CANCELED", timeout=10)
    assert job_state(addr, "after") == "OMITTED"
    # finishAfterAllTasksDone: the service ends by itself once 'short' is done
    assert ask(addr, {"request": "control", "command": "finishAfterAllTasksDone"})["code"] == 0
    assert ask(addr, {"request": "control", "command": "nonsense"})["code"] != 0
    assert service.proc.wait(15) is not None
    final = json.loads((service.run_dir / "final_status").read_text())
    assert final["jobs"] == {"SUCCEED": 1, "CANCELED": 1, "OMITTED": 1}


# ---- bad frames: an error (or a logged drop), and everyone else is still served ----


def test_non_json_body_gets_an_error(service: Service) -> None:
    for body in (b"this is not json", b"\xff\xfe\x00garbage", b"", b'{"request": "listJobs"'):
        reply = send_raw(service.connect, [body])
        assert reply is not None, f"no answer to {body!r}"
        answer = json.loads(reply[0])
        assert answer["code"] != 0 and "JSON" in answer["message"], answer
        still_serving(service)
    assert "not JSON" in service.log()


def test_multipart_message_from_a_dealer(service: Service) -> None:
    listing = json.dumps({"request": "listJobs"}).encode()
    reply = send_raw(service.connect, [b"", listing, listing], kind=zmq.DEALER)
    assert reply is not None and reply[0] == b"", reply
    answer = json.loads(reply[-1])
    assert answer["code"] != 0 and "frame" in answer["message"]
    still_serving(service)
    # a DEALER without the empty delimiter frame, one JSON frame: a normal answer
    reply = send_raw(service.connect, [listing], kind=zmq.DEALER)
    assert reply is not None and json.loads(reply[-1])["code"] == 0
    still_serving(service)


@pytest.mark.parametrize("payload", [
    {"request": "frobnicate"},
    {"request": 42},
    {"no-request": "here"},
    [1, 2, 3],
    "submit",
    17,
    None,
    {"request": "submit", "jobs": "not-a-list"},
    {"request": "jobStatus", "jobNames": 5},
])
def test_unknown_or_malformed_requests_are_refused(service: Service, payload: Any) -> None:
    answer = ask(service.connect, payload)
    assert answer["code"] != 0 and answer["message"], answer
    if payload == {"request": "frobnicate"}:
        assert "frobnicate" in answer["message"] and "submit" in answer["message"]
    if not isinstance(payload, dict):
        assert "object" in answer["message"]
    still_serving(service)
    assert ask(service.connect, {"request": "listJobs"})["data"]["length"] == 0


def test_huge_message_drops_that_connection_only(service: Service) -> None:
    huge = b'{"request": "listJobs", "pad": "' + b"x" * (64 * 1024 * 1024) + b'"}'
    good = CTX.socket(zmq.REQ)  # connected before the huge one is sent, and kept through it
    good.setsockopt(zmq.LINGER, 0)
    good.connect(service.connect)
    try:
        reply = send_raw(service.connect, [huge], timeout=3)
        assert reply is None, "a message over 64 MiB was answered"
        still_serving(service)
        good.send_json({"request": "status"})
        assert good.poll(10000)
        answer = good.recv_json()
        assert isinstance(answer, dict) and answer["code"] == 0
    finally:
        good.close(0)
    assert service.proc.poll() is None


def test_clients_that_send_and_disconnect_without_reading(service: Service) -> None:
    names = [f"gone{i}" for i in range(20)]
    for name in names:
        sock = CTX.socket(zmq.REQ)
        sock.connect(service.connect)
        sock.send_json({"request": "submit", "jobs": [{"name": name, "execution": {"exec": "/bin/true"}}]})
        sock.close(linger=2000)  # the request leaves; the answer will find nobody
    still_serving(service)
    # nothing they asked for is lost
    wait_for(lambda: set(ask(service.connect, {"request": "listJobs"})["data"]["jobs"]) == set(names), 15,
             "the vanished clients' jobs")
    wait_for(lambda: all(e["status"] == "SUCCEED" for e in
                         ask(service.connect, {"request": "listJobs"})["data"]["jobs"].values()), 15,
             "their jobs to succeed")
    # a REQ client that never reads its answer and keeps its socket open does not block anyone
    lingering = CTX.socket(zmq.REQ)
    lingering.setsockopt(zmq.LINGER, 0)
    lingering.connect(service.connect)
    try:
        lingering.send_json({"request": "listJobs"})
        still_serving(service)
    finally:
        lingering.close(0)


# ---- security ----


def test_loopback_speaks_plain_qcg_json(service: Service) -> None:
    """QCG's clients have no keys: on loopback the service is plain (off loopback it is
    CURVE: tests/integration/test_curve.py, in a network namespace)."""
    assert service.address.startswith("tcp://127.0.0.1:")
    assert json.loads((service.run_dir / "address").read_text())["server_key"] is None
    assert not (service.run_dir / "client.key").exists()
    answer = ask(service.connect, {"request": "submit", "jobs": [
        {"name": "plain", "execution": {"script": "touch plain.txt"}}]})
    assert answer["code"] == 0
    wait_state(service.connect, "plain", "SUCCEED")
    assert (service.wd / "plain.txt").exists()


# ---- ports ----


def test_exact_net_port(tmp_path: Path) -> None:
    port = free_port()
    svc = start_service(tmp_path / "wd", "--net-port", str(port))
    try:
        assert svc.address == f"tcp://127.0.0.1:{port}"
        assert ask(f"tcp://127.0.0.1:{port}", {"request": "listJobs"})["code"] == 0
    finally:
        stop_service(svc)


def test_net_port_range(tmp_path: Path) -> None:
    lo = random.randrange(30000, 50000, 100)
    hi = lo + 50
    svc = start_service(tmp_path / "wd", "--net-port-min", str(lo), "--net-port-max", str(hi))
    try:
        assert lo <= svc.port <= hi, svc.address
        assert svc.pub is not None
        pub_port = int(svc.pub.rsplit(":", 1)[1])
        assert lo <= pub_port <= hi, svc.pub
        assert ask(svc.connect, {"request": "listJobs"})["code"] == 0
    finally:
        stop_service(svc)


def test_pub_port_and_disable_pub(tmp_path: Path) -> None:
    pub_port = free_port()
    svc = start_service(tmp_path / "a", "--net-pub-port", str(pub_port))
    try:
        assert svc.pub == f"tcp://127.0.0.1:{pub_port}"
        assert ask(svc.connect, {"request": "status"})["data"]["System"]["Pubaddress"] == svc.pub
    finally:
        stop_service(svc)
    quiet = start_service(tmp_path / "b", "--disable-pub")
    try:
        assert quiet.pub is None
        assert ask(quiet.connect, {"request": "status"})["data"]["System"]["Pubaddress"] is None
        assert json.loads((quiet.run_dir / "address").read_text())["pub"] is None
    finally:
        stop_service(quiet)


def test_taken_net_port_is_a_clear_error(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = subprocess.run(HPILOT + ["service", "--net-port", str(port), "--nodes", "1", "--wd", str(wd)],
                              cwd=wd, capture_output=True, text=True, timeout=30, env=clean_env(),
                              stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hpilot: error:"), proc.stderr
    assert str(port) in lines[0]
    assert "listening" not in proc.stdout


# ---- 100 clients at once ----


@dataclass
class ClientTally:
    sent: int = 0
    answered: int = 0
    submitted: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)


@pytest.mark.timeout(150)
def test_hundred_clients_lose_no_request_and_no_job(tmp_path: Path) -> None:
    svc = start_service(tmp_path / "wd", nodes="4")
    n_clients, per_client = 100, 40
    deadline = time.monotonic() + 40
    tallies = [ClientTally() for _ in range(n_clients)]
    barrier = threading.Barrier(n_clients, timeout=30)

    def client(idx: int) -> None:
        tally = tallies[idx]
        sock = CTX.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(svc.connect)
        try:
            barrier.wait()
            for i in range(per_client):
                if time.monotonic() > deadline:
                    break
                name = f"c{idx:03d}-{i:02d}"
                requests: List[Dict[str, Any]] = [
                    {"request": "submit", "jobs": [{"name": name, "execution": {"exec": "/bin/true"}}]},
                    {"request": "jobStatus", "jobNames": [name]},
                    {"request": "listJobs"} if i % 4 == 0 else {"request": "resourcesInfo"},
                ]
                for req in requests:
                    sock.send_json(req)
                    tally.sent += 1
                    if not sock.poll(30000):
                        tally.errors.append(f"{name}: no answer to {req['request']}")
                        return  # a REQ socket without its answer cannot go on
                    answer = sock.recv_json()
                    tally.answered += 1
                    if not isinstance(answer, dict) or answer.get("code") != 0:
                        tally.errors.append(f"{name}: {req['request']}: {answer}")
                    elif req["request"] == "submit":
                        tally.submitted.append(name)
        except Exception as e:  # noqa: BLE001 - reported below
            tally.errors.append(f"client {idx}: {type(e).__name__}: {e}")
        finally:
            sock.close(0)

    try:
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.monotonic() + 35))
        assert not any(t.is_alive() for t in threads), "a client thread is stuck"
        errors = [e for t in tallies for e in t.errors]
        assert not errors, errors[:10]
        sent = sum(t.sent for t in tallies)
        answered = sum(t.answered for t in tallies)
        assert answered == sent, f"{sent - answered} of {sent} requests unanswered"
        submitted = [n for t in tallies for n in t.submitted]
        assert len(submitted) >= n_clients, "the clients hardly ran"
        assert len(set(submitted)) == len(submitted)

        listing = ask(svc.connect, {"request": "listJobs"}, timeout=30)["data"]
        assert set(listing["jobs"]) == set(submitted)
        assert listing["length"] == len(submitted)

        # Up to 4000 tasks on 4 cores: how long they take depends on the machine's load, so the
        # wait lasts while jobs keep ending. It polls the cheap status counts a few times a second:
        # a listJobs of thousands of jobs every 10 ms had slowed the service itself down.
        def ended() -> int:
            stats = ask(svc.connect, {"request": "status"}, timeout=30)["data"]["JobStats"]
            assert stats["FailedJobs"] == 0, stats
            return int(stats["FinishedJobs"])

        wait_for_progress(ended, len(submitted), 30, f"{len(submitted)} jobs to end")
        jobs = ask(svc.connect, {"request": "listJobs"}, timeout=30)["data"]["jobs"]
        assert {n for n, e in jobs.items() if e["status"] != "SUCCEED"} == set()
        stats = ask(svc.connect, {"request": "status"})["data"]["JobStats"]
        assert stats["TotalJobs"] == len(submitted) and stats["FinishedJobs"] == len(submitted)
    finally:
        stop_service(svc)
