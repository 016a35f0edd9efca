"""Off loopback, on real sockets, inside a private network namespace (tests/netns.py).

The service binds ``d0`` (``10.211.0.1``, an address that exists only in the namespace):
its client and event sockets are then CURVE servers.  A client without the run's client
key gets nothing and runs nothing, whether it speaks plain QCG JSON, holds a key of its
own or a key of another role; events are unreadable without the key; a registration
captured on the wire and replayed (as is, or with one bit changed) is refused, and so is
one made with any key but the run's partition key.  hpilot's own clients (the command
line, ``Manager``, ``LocalManager``, a task's controller, a partition manager with
``--parent``) find their keys in the run directory and just work.  Probes run as real
processes in the namespace (tests/integration/ns_probe.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.conftest import HPILOT, latest_run, wait_for
from tests.netns import ADDRESS, IFACE, NetNS, NetNSUnavailable

pytestmark = pytest.mark.integration
PROBE = str(Path(__file__).with_name("ns_probe.py"))
BANNER = re.compile(r"^hpilot: service listening on (\S+?)(?:, events (\S+))?; run dir (.+)$")
ENV_KEYS = ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS", "HPILOT_CLIENT_KEY", "HPILOT_PARTITION_KEY")


@pytest.fixture(scope="module")
def ns() -> Iterator[NetNS]:
    try:
        n = NetNS()
    except NetNSUnavailable as e:
        pytest.skip(f"no private network namespace here: {e}")
    try:
        yield n
    finally:
        n.close()


def clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(extra)
    return env


@dataclass
class Svc:
    proc: subprocess.Popen
    address: str
    pub: Optional[str]
    run_dir: Path
    wd: Path

    @property
    def client_key(self) -> str:
        return str(self.run_dir / "client.key")

    def log(self) -> str:
        return (self.run_dir / "service.log").read_text()


def start(ns: NetNS, wd: Path, *extra: str) -> Svc:
    wd.mkdir(parents=True, exist_ok=True)
    out = wd.parent / f"{wd.name}.out"
    with open(out, "w") as fo:
        proc = ns.popen(HPILOT + ["service", "--net", "--net-iface", IFACE, "--nodes", "2", "--wd", str(wd), *extra],
                        cwd=wd, stdin=subprocess.DEVNULL, stdout=fo, stderr=subprocess.STDOUT, env=clean_env())
    try:
        wait_for(lambda: "listening on" in out.read_text() or proc.poll() is not None, 30, "the banner")
        m = next(filter(None, map(BANNER.match, out.read_text().splitlines())), None)
        assert m, out.read_text()
    except BaseException:
        stop(ns, proc)
        raise
    return Svc(proc, m.group(1), m.group(2), Path(m.group(3)), wd)


def stop(ns: NetNS, proc: subprocess.Popen, svc: Optional[Svc] = None) -> None:
    if proc.poll() is None and svc is not None:
        probe(ns, "ask", svc.address, {"request": "finish"}, keys=svc.client_key, seconds=5)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def svc(ns: NetNS, wd: Path) -> Iterator[Svc]:
    s = start(ns, wd)
    try:
        yield s
    finally:
        stop(ns, s.proc, s)


def probe(ns: NetNS, command: str, address: str, payload: Any = None, keys: Optional[str] = None,
          seconds: float = 10, **flags: str) -> Dict[str, Any]:
    args = [PROBE, command, address]
    if payload is not None:
        args.append(json.dumps(payload))
    if keys:
        args += ["--keys", keys]
    for k, v in flags.items():
        args += [f"--{k.replace('_', '-')}", v]
    done = ns.python([*args, "--seconds", str(seconds)], timeout=seconds + 30, env=clean_env())
    assert done.returncode == 0, done.stderr
    result: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def stranger_keys(tmp_path: Path, svc_run: Path, name: str) -> str:
    """A key file with the service's public key and a pair the service never heard of."""
    from hpilot.launcher import curve

    pair = curve.new_pair()
    path = str(tmp_path / f"{name}.key")
    curve.write_peer_keys(path, curve.read_pair(str(svc_run / "server.key")).public, pair)
    return path


def ok(ns: NetNS, svc: Svc, payload: Dict[str, Any]) -> Dict[str, Any]:
    got = probe(ns, "ask", svc.address, payload, keys=svc.client_key)
    assert "answer" in got and got["answer"]["code"] == 0, got
    answer: Dict[str, Any] = got["answer"]
    return answer


# ---- the address ----


def test_an_interface_name_gives_a_connectable_address_and_curve(svc: Svc) -> None:
    info = json.loads((svc.run_dir / "address").read_text())
    assert info["address"].startswith(f"tcp://{ADDRESS}:") and info["pub"].startswith(f"tcp://{ADDRESS}:")
    assert info["server_key"] and len(info["server_key"]) == 40
    for name in ("client.key", "server.key"):
        assert stat.S_IMODE((svc.run_dir / name).stat().st_mode) == 0o600


def test_an_address_works_as_the_interface_too(ns: NetNS, wd: Path) -> None:
    s = start(ns, wd, "--net-iface", ADDRESS)  # the later flag wins
    try:
        assert s.address.startswith(f"tcp://{ADDRESS}:")
        assert ok(ns, s, {"request": "status"})["data"]["System"]["Zmqaddress"] == s.address
    finally:
        stop(ns, s.proc, s)


def test_an_unknown_interface_is_refused_with_its_name(ns: NetNS, wd: Path) -> None:
    done = ns.run(HPILOT + ["service", "--net", "--net-iface", "nosuch0", "--nodes", "1", "--wd", str(wd)],
                  cwd=wd, env=clean_env())
    assert done.returncode == 2 and "nosuch0" in done.stderr and "Traceback" not in done.stderr, done.stderr


# ---- strangers get nothing ----


def test_a_client_without_the_key_gets_nothing_and_runs_nothing(ns: NetNS, svc: Svc, tmp_path: Path) -> None:
    marker = svc.wd / "pwned.txt"
    evil = {"request": "submit", "jobs": [{"name": "evil", "execution": {"script": f"touch {marker}"}}]}
    wrong = stranger_keys(tmp_path, svc.run_dir, "stranger")
    other_role = str(tmp_path / "partition.key")  # a key of the run, but not a client's
    from hpilot.launcher import curve

    curve.RunKeys(str(tmp_path), curve.read_pair(str(svc.run_dir / "server.key"))).issue("partition")
    for keys, why in ((None, "handshake failed"), (wrong, "refused this client's key"),
                      (other_role, "refused this client's key")):
        for payload in (evil, {"request": "finish"}, {"request": "listJobs"}):
            got = probe(ns, "ask", svc.address, payload, keys=keys, seconds=5)
            assert "answer" not in got and why in got["error"], (keys, got)
    assert svc.proc.poll() is None, "a stranger's finish stopped the service"
    # with the run's key: nothing of the above happened; a job now runs
    assert ok(ns, svc, {"request": "listJobs"})["data"]["jobs"] == {}
    ok(ns, svc, {"request": "submit", "jobs": [{"name": "good", "execution": {"script": "touch good.txt"}}]})
    wait_for(lambda: ok(ns, svc, {"request": "jobStatus", "jobNames": ["good"]})["data"]["jobs"]["good"]["data"]
             ["status"] == "SUCCEED", 20, "good to succeed")
    assert (svc.wd / "good.txt").exists() and not marker.exists()
    assert "refused" in svc.log() and "client socket" in svc.log()


def test_events_are_unreadable_without_the_key(ns: NetNS, svc: Svc, tmp_path: Path) -> None:
    assert svc.pub is not None
    wrong = stranger_keys(tmp_path, svc.run_dir, "stranger")
    listeners = {name: ns.popen([sys.executable, PROBE, "listen", svc.pub, *(["--keys", k] if k else []),
                                 "--until-job", "watched", "--seconds", "20"],
                                stdout=subprocess.PIPE, text=True, env=clean_env())
                 for name, k in (("plain", None), ("wrong", wrong), ("run", svc.client_key))}
    try:
        run = listeners["run"]
        assert run.stdout is not None
        assert json.loads(run.stdout.readline()) == {"subscribed": True}
        ok(ns, svc, {"request": "submit", "jobs": [{"name": "watched", "execution": {"exec": "/bin/true"}}]})
        got = {name: json.loads(p.communicate(timeout=40)[0].strip().splitlines()[-1])
               for name, p in listeners.items()}
    finally:
        for p in listeners.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    assert got["run"]["welcome"] and any(e.get("job") == "watched" for e in got["run"]["events"]), got["run"]
    for name in ("plain", "wrong"):
        assert not got[name]["welcome"] and got[name]["events"] == [] and not got[name].get("other_frames"), \
            got[name]
        assert got[name]["handshake"], got[name]


# ---- the partition link ----


@pytest.fixture
def governor(ns: NetNS, wd: Path) -> Iterator[Svc]:
    s = start(ns, wd, "--governor", "--partition-heartbeat", "0.5")
    try:
        yield s
    finally:
        stop(ns, s.proc, s)


def test_a_replayed_or_forged_registration_is_refused(ns: NetNS, governor: Svc, tmp_path: Path) -> None:
    link = (governor.run_dir / "partitions.address").read_text().strip()
    assert link.startswith(f"tcp://{ADDRESS}:")
    partition_key = str(governor.run_dir / "partition.key")
    got = probe(ns, "replay", link, keys=partition_key, id="genuine", seconds=5)
    assert got["genuine"] == {"answer": "Registered", "why": None}, got
    assert got["recorded_bytes"] > 0
    # the bytes of a real registration, sent again: the governor ends the connection in the handshake
    assert got["replayed"]["closed_by_governor"] and got["forged"]["closed_by_governor"], got
    # registrations with any key but the run's partition key: refused before a frame is read
    for keys, why in ((None, "handshake failed"),
                      (stranger_keys(tmp_path, governor.run_dir, "stranger"), "refused"),
                      (governor.client_key, "refused")):  # a task's key cannot pose as a partition
        got = probe(ns, "register", link, keys=keys, id="forged", seconds=5)
        assert "answer" not in got and why in got["error"], (keys, got)
    # exactly one registration ever happened: the genuine one (which then left)
    log = governor.log()
    assert log.count(" registered from ") == 1 and "partition genuine registered" in log, log
    assert "refused" in log and "partition socket" in log
    # the genuine one left without a word: lost once silent for 6 heartbeats (3 s), which the probes
    # above may or may not have outlasted on a loaded machine
    wait_for(lambda: ok(ns, governor, {"request": "resourcesInfo"})["data"]["partitions"] == [], 20,
             "the silent genuine partition to be lost")


def test_hpilots_own_partition_manager_finds_its_key(ns: NetNS, governor: Svc) -> None:
    wd = governor.wd
    out = wd / "part.out"
    with open(out, "wb") as fo:
        part = ns.popen(HPILOT + ["service", "--parent", str(wd), "--id", "own", "--nodes", "2", "--wd", str(wd)],
                        cwd=wd, stdout=fo, stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True)
    try:
        ok(ns, governor, {"request": "submit", "jobs": [{"name": "p", "iteration": {"stop": 3},
                                                          "execution": {"script": "echo ${it} > p.${it}"}}]})
        wait_for(lambda: ok(ns, governor, {"request": "jobStatus", "jobNames": ["p"]})["data"]["jobs"]["p"]["data"]
                 ["status"] == "SUCCEED", 30, "p to succeed")
        assert sorted(x.name for x in wd.glob("p.*")) == ["p.0", "p.1", "p.2"]
    finally:
        stop(ns, governor.proc, governor)
        try:
            part.wait(20)
        except subprocess.TimeoutExpired:
            part.kill()
            part.wait()
    assert "registered" in out.read_text() or "own" in governor.log()


def test_a_partitions_client_port_takes_the_runs_client_key(ns: NetNS, governor: Svc, tmp_path: Path) -> None:
    """``--parent WD --net`` off loopback: CURVE with the governor's server and client keys, so a
    client of the run (a task, the command line in the wd) reaches the partition's port too."""
    wd = governor.wd
    with open(wd / "pp.out", "wb") as fo:
        part = ns.popen(HPILOT + ["service", "--parent", str(wd), "--id", "pp", "--nodes", "1", "--wd", str(wd),
                                  "--net", "--net-iface", IFACE], cwd=wd, stdout=fo, stderr=subprocess.STDOUT,
                        env=clean_env(), start_new_session=True)
    try:
        found: List[Path] = []
        wait_for(lambda: bool(found.extend((wd / ".hpilot" / "partitions").glob(f"pp-*-{part.pid}/address"))
                              or found), 30, "the partition's address")
        wait_for(lambda: found[0].read_text().endswith("}"), 10, "the address file")
        info = json.loads(found[0].read_text())
        assert info["address"].startswith(f"tcp://{ADDRESS}:")
        assert info["server_key"] == json.loads((governor.run_dir / "address").read_text())["server_key"]
        got = probe(ns, "ask", info["address"], {"request": "listJobs"}, keys=governor.client_key)
        assert got.get("answer", {}).get("code") == 0, got
        got = probe(ns, "ask", info["address"], {"request": "listJobs"}, seconds=5)
        assert "handshake failed" in got["error"], got
        wrong = stranger_keys(tmp_path, governor.run_dir, "stranger")
        got = probe(ns, "ask", info["address"], {"request": "listJobs"}, keys=wrong, seconds=5)
        assert "refused" in got["error"], got
    finally:
        stop(ns, governor.proc, governor)
        try:
            part.wait(20)
        except subprocess.TimeoutExpired:
            part.kill()
            part.wait()


# ---- hpilot's own clients ----


def test_the_command_line_finds_the_key_in_the_wd_and_from_another_place(ns: NetNS, svc: Svc, tmp_path: Path) -> None:
    def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
        return ns.run(HPILOT + list(args), cwd=cwd, env=clean_env(**env), timeout=60)

    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"request": "submit", "jobs": [{"name": "cli", "execution": {"exec": "/bin/true"}}]}]))
    done = cli("submit", str(jobs), cwd=svc.wd)
    assert done.returncode == 0, done.stderr
    done = cli("wait", cwd=svc.wd)
    assert done.returncode == 0, done.stderr
    # from another place (another node, as far as the client knows): the address and a copy of the key
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(svc.client_key, elsewhere / "client.key")
    done = cli("status", "--json", "--address", svc.address, cwd=elsewhere,
               HPILOT_CLIENT_KEY=str(elsewhere / "client.key"))
    assert done.returncode == 0 and "cli" in done.stdout, done.stderr
    done = cli("status", "--address", svc.address, cwd=elsewhere)  # no key: one clear line, no hang
    assert done.returncode == 2 and "HPILOT_CLIENT_KEY" in done.stderr and "Traceback" not in done.stderr, done


def test_the_python_api_and_a_tasks_controller_use_the_run_keys(ns: NetNS, svc: Svc) -> None:
    child = ("from hpilot.governor import Manager\n"
             "m = Manager()\n"  # HPILOT_ADDRESS and HPILOT_CLIENT_KEY, as every task has
             "m.submit([{'name': 'child', 'execution': {'script': 'touch child.txt'}}])\n"
             "m.cleanup()\n")
    parent = {"name": "parent", "execution": {"script": shlex.join([sys.executable, "-c", child]),
                                               "stderr": "parent.err"}}
    api = ("import json, sys\n"
           "from hpilot.governor import Manager\n"
           "m = Manager()\n"  # found from the working directory: address and key
           f"m.submit([json.loads({json.dumps(json.dumps(parent))})])\n"
           "states = m.wait4(['parent'], timeout=60)\n"
           "states.update(m.wait4(['child'], timeout=60))\n"
           "print(json.dumps(states))\n"
           "m.cleanup()\n")
    done = ns.python(["-c", api], cwd=svc.wd, env=clean_env(), timeout=120)
    assert done.returncode == 0, done.stderr + (svc.wd / "parent.err").read_text()
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"parent": "SUCCEED", "child": "SUCCEED"}
    assert (svc.wd / "child.txt").exists()


def test_the_executor_off_loopback(ns: NetNS, wd: Path) -> None:
    """Its futures are woken by the events, which off loopback need the run's client key."""
    code = ("import json\n"
            "from hpilot.governor import Executor\n"
            f"with Executor({str(wd)!r}, '2', False, False, None, 'info', '--net-iface', {IFACE!r}) as ex:\n"
            "    f = ex.submit('true', numCores=1)\n"
            "    print(json.dumps([ex._manager.keys is not None, f.result(timeout=60)]))\n")
    done = ns.python(["-c", code], cwd=wd, env=clean_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    curved, result = json.loads(done.stdout.strip().splitlines()[-1])
    assert curved and list(result.values()) == ["SUCCEED"], result


def test_local_manager_off_loopback(ns: NetNS, wd: Path) -> None:
    code = ("import json\n"
            "from hpilot.governor import LocalManager\n"
            f"m = LocalManager(['--nodes', '2', '--net-iface', {IFACE!r}, '--wd', {str(wd)!r}])\n"
            "m.submit([{'name': 'lm', 'execution': {'exec': '/bin/true'}}])\n"
            "print(json.dumps([m.address, m.keys is not None, m.wait4('lm', timeout=60)]))\n"
            "m.finish()\n")
    done = ns.python(["-c", code], cwd=wd, env=clean_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    address, curved, states = json.loads(done.stdout.strip().splitlines()[-1])
    assert address.startswith(f"tcp://{ADDRESS}:") and curved and states == {"lm": "SUCCEED"}
    assert latest_run(wd).joinpath("client.key").exists()


# ---- what the run leaves: private ----


def test_the_run_dir_is_private_and_no_key_is_logged(ns: NetNS, svc: Svc) -> None:
    ok(ns, svc, {"request": "submit", "jobs": [{"name": "s", "execution": {
        "script": "true", "env": {"PASSWORD": "hunter2-secret-value"}}}]})
    wait_for(lambda: ok(ns, svc, {"request": "jobStatus", "jobNames": ["s"]})["data"]["jobs"]["s"]["data"]
             ["status"] == "SUCCEED", 20, "s")
    stop(ns, svc.proc, svc)
    assert_private(svc.run_dir)
    log = svc.log()
    for name in ("client.key", "server.key"):
        assert json.loads((svc.run_dir / name).read_text())["secret"] not in log
    assert "hunter2-secret-value" not in log  # a job's environment is in the journal (0600), never the log


def assert_private(run_dir: Path) -> None:
    """The run dir 0700; every file hpilot wrote in it 0600 (a task's own files aside)."""
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(run_dir.parent.stat().st_mode) == 0o700  # .hpilot
    bad: List[str] = []
    for path in run_dir.rglob("*"):
        if "hostfiles" in path.parts or path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            bad.append(f"{path.relative_to(run_dir)} {oct(mode)}")
    assert not bad, bad
