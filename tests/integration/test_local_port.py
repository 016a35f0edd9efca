"""Every run can be watched (issue #15, point 1): a plain ``hpilot run`` (no ``--net``),
single or governor mode, answers the client commands from its working directory on
ipc:// sockets in its run dir, which only its owner can open.

Each test starts a real ``hpilot run`` and always stops it (finish, then a kill).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest
import zmq
from hpilot.governor import welcome
from hpilot.governor.service.local import LocalPort

from tests.conftest import HPILOT, wait_for, write_requests

pytestmark = pytest.mark.integration
ENV_KEYS = ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS", "HPILOT_SECRET")


def env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ENV_KEYS}


def hp(args: List[str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(HPILOT + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env(),
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def sweep(n: int, seconds: float, fail: int = -1) -> list:
    script = f"sleep {seconds}; [ ${{it}} -ne {fail} ]"
    return [{"request": "submit", "jobs": [{"name": "sweep", "iteration": {"stop": n},
                                            "execution": {"exec": "bash", "args": ["-c", script]}}]},
            {"request": "control", "command": "finishAfterAllTasksDone"}]


class Run:
    def __init__(self, wd: Path, *args: str) -> None:
        wd.mkdir(parents=True, exist_ok=True)
        self.wd = wd
        self.err = wd.parent / f"{wd.name}.err"
        with open(self.err, "w") as fe, open(wd.parent / f"{wd.name}.out", "w") as fo:
            self.proc = subprocess.Popen(HPILOT + ["run", *args], cwd=wd, stdout=fo, stderr=fe,
                                         stdin=subprocess.DEVNULL, env=env())
        wait_for(lambda: "watch it with" in self.err.read_text() or self.proc.poll() is not None, 30,
                 "the run's first line")
        first = self.err.read_text().splitlines()[0]
        assert first.startswith("hpilot: run dir ") and "watch it with `hpilot top` or `hpilot status`" in first
        self.run_dir = Path(first.split()[3].rstrip(";"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                hp(["finish"], self.wd, timeout=15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def runs() -> Iterator[List[Run]]:
    started: List[Run] = []
    yield started
    for r in started:
        r.stop()


def start(runs: List[Run], wd: Path, *args: str) -> Run:
    r = Run(wd, *args)
    runs.append(r)
    return r


def test_a_plain_run_is_watched_from_its_wd(tmp_path: Path, runs: List[Run]) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    write_requests(wd / "jobs.json", sweep(40, 1.0, fail=2))
    r = start(runs, wd, "jobs.json", "--nodes", "4")
    assert not (r.run_dir / "address").exists()  # no --net
    local = json.loads((r.run_dir / "local").read_text())
    assert local["address"].startswith("ipc://") and local["pid"] == r.proc.pid
    wait_for(lambda: "1 failed" in hp(["status"], wd).stdout, 30, "the failure to show")
    text = hp(["status"], wd).stdout
    assert f"run:        {r.run_dir}" in text and "running" in text
    listing = json.loads(hp(["list", "--json"], wd).stdout)
    assert listing["sweep"]["status"] == "EXECUTING" and listing["sweep"]["counts"]["failed"] == 1
    assert "sweep:2: exit code 1" in hp(["info", "sweep"], wd).stdout
    waited = hp(["wait", "--timeout", "0.3"], wd)
    assert waited.returncode == 124, waited.stderr
    assert hp(["cancel", "sweep"], wd).returncode == 0
    assert r.proc.wait(30) == 1
    final = json.loads((r.run_dir / "final_status").read_text())
    its = final["iterations"]
    assert its["total"] == 40 and its["failed"] == 1 and its["not_started"] > 0
    assert its["succeeded"] + its["failed"] + its["canceled"] + its["not_started"] == 40
    for name in ("ctl", "events", "local"):
        assert not (r.run_dir / name).exists(), name  # a finished run is not found as a running one
    gone = hp(["status"], wd)
    assert gone.returncode == 2 and "has ended" in gone.stderr


def test_a_governor_run_is_watched(tmp_path: Path, runs: List[Run]) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    write_requests(wd / "jobs.json", sweep(30, 0.5))
    start(runs, wd, "jobs.json", "--nodes", "2,2", "--partition-nodes", "1")
    wait_for(lambda: hp(["status", "--partitions"], wd).stdout.count(" up") == 2, 30, "two partitions")
    parts = json.loads(hp(["status", "--partitions", "--json"], wd).stdout)["partitions"]
    assert sorted(p["name"] for p in parts) == ["p1", "p2"]
    assert hp(["wait", "--timeout", "60"], wd, timeout=90).returncode == 0


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (pytest's are too long for a socket path in the run dir)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="hp", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_only_the_owner_can_connect(short_dir: Path, runs: List[Run]) -> None:
    """What the OS enforces: another user gets EACCES at connect(); checked as `nobody`."""
    wd = short_dir / "wd"
    wd.mkdir()
    write_requests(wd / "jobs.json", sweep(4, 30))
    r = start(runs, wd, "jobs.json", "--nodes", "1")
    assert not (r.run_dir / "ctl").is_symlink()  # a short path: the socket is in the run dir itself
    assert stat.S_IMODE(r.run_dir.stat().st_mode) == 0o700
    for name in ("ctl", "events"):
        assert stat.S_IMODE((r.run_dir / name).stat().st_mode) == 0o600
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("checking another user's access needs root and setpriv")
    # the path to the run dir is open to all (as a project dir would be), the run dir is not
    for p in [wd, wd / ".hpilot", short_dir]:
        os.chmod(p, p.stat().st_mode | 0o005)
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1]); print('CONNECTED')\nexcept OSError as e: print('REFUSED', e.errno)")
    # an interpreter `nobody` can run: the system's (pyenv's 3.9 under /root cannot load its libpython as nobody)
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    for target in (r.run_dir / "ctl", r.run_dir / "events"):
        out = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                              python, "-S", "-c", probe, str(target)], capture_output=True, text=True,
                             timeout=30)
        assert out.stdout.strip() == "REFUSED 13", out.stdout + out.stderr  # EACCES
    # and the owner can
    s = __import__("socket").socket(__import__("socket").AF_UNIX)
    s.connect(str(r.run_dir / "ctl"))
    s.close()


def test_a_deep_run_dir_gets_sockets_in_a_private_dir(tmp_path: Path, runs: List[Run]) -> None:
    wd = tmp_path / ("deep-" + "d" * 60) / ("x" * 40)
    wd.mkdir(parents=True)
    write_requests(wd / "jobs.json", sweep(4, 30))
    r = start(runs, wd, "jobs.json", "--nodes", "1")
    assert len(str(r.run_dir / "ctl")) > 107
    ctl = r.run_dir / "ctl"
    assert ctl.is_symlink()
    target = Path(os.readlink(ctl))
    assert target.parent.name == f"hpilot-{os.getuid()}" and stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert "sweep" in hp(["status"], wd).stdout
    hp(["finish"], wd)
    r.proc.wait(30)
    assert not target.exists() and not ctl.exists()


def test_a_killed_run_is_a_quick_clear_error(tmp_path: Path, runs: List[Run]) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    write_requests(wd / "jobs.json", sweep(4, 30))
    r = start(runs, wd, "jobs.json", "--nodes", "1")
    os.kill(r.proc.pid, signal.SIGKILL)
    r.proc.wait(10)
    assert (r.run_dir / "local").exists()
    proc = hp(["status"], wd)
    assert proc.returncode == 2 and "has ended" in proc.stderr  # said at once: not a timeout on the dead socket
    # a resume of that run is watched at the same place
    res = subprocess.Popen(HPILOT + ["resume", ".", "--nodes", "1"], cwd=wd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env())
    try:
        wait_for(lambda: hp(["status"], wd).returncode == 0, 30, "the resumed run to answer")
    finally:
        hp(["finish"], wd)
        res.wait(30)


def test_the_welcome_comes_once_the_subscription_is_read(tmp_path: Path) -> None:
    """A subscriber's welcome means its subscription is in place: the service sends it after
    reading the subscription, and what it publishes from then on reaches the subscriber (ZeroMQ's
    own welcome left on connecting, before the XPUB had the subscription: a job's first event
    could be lost to a client that submitted on seeing it)."""
    port = LocalPort(str(tmp_path))
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(port.endpoints.pub or "")
        wait_for(lambda: port.pub is not None and port.pub.poll(10) != 0, 10, "the subscription")
        assert sub.poll(200) == 0, "a welcome before the service read the subscription"
        port.drain_subscriptions()
        assert sub.poll(5000), "no welcome"
        assert sub.recv_multipart() == [b"hpilot-welcome"]
        port.publish({"event": "job", "job": "j", "state": "QUEUED", "time": 1.0})
        assert sub.poll(5000), "the event after the welcome did not come"
        assert sub.recv_multipart()[0] == b"job"
    finally:
        sub.close(0)
        port.close()


def test_each_client_gets_its_own_welcome_and_no_other(tmp_path: Path) -> None:
    """A client's welcome answers its own welcome subscription: a second client connecting does
    not wake the first (a welcome for all would make every waiting client ask again)."""
    port = LocalPort(str(tmp_path))
    ctx = zmq.Context.instance()
    socks = [ctx.socket(zmq.SUB) for _ in range(2)]
    try:
        mine = []
        for sub in socks:
            sub.connect(port.endpoints.pub or "")
            mine.append(welcome.subscribe(sub, [b"job"]))
            wait_for(lambda: port.pub is not None and port.pub.poll(10) != 0, 10, "the subscriptions")
            port.drain_subscriptions()
            assert welcome.wait(sub, mine[-1], 5), "no welcome"
        assert mine[0] != mine[1]
        assert socks[0].poll(200) == 0, "the first client saw the second one's welcome"
        port.publish({"event": "job", "job": "j", "state": "QUEUED", "time": 1.0})
        for sub in socks:
            assert sub.poll(5000) and sub.recv_multipart()[0] == b"job"
    finally:
        for sub in socks:
            sub.close(0)
        port.close()


def test_events_are_built_only_while_someone_listens(tmp_path: Path) -> None:
    port = LocalPort(str(tmp_path))
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    try:
        assert not port.listening
        sub.setsockopt(zmq.SUBSCRIBE, b"job")
        sub.connect(port.endpoints.pub or "")
        wait_for(lambda: port.pub is not None and port.pub.poll(10) != 0, 10, "the subscription")
        port.drain_subscriptions()
        assert port.listening
        sub.close(0)
        wait_for(lambda: port.pub is not None and port.pub.poll(10) != 0, 10, "the unsubscription")
        port.drain_subscriptions()
        assert not port.listening
    finally:
        sub.close(0)
        port.close()
    assert not (tmp_path / "ctl").exists()
