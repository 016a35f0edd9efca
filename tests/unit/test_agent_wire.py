"""The agent protocol: codec, authentication, CPU mapping, and real agents on loopback.

The pool tests start real agent processes on this machine (the starter runs the agent's
command directly instead of through srun/ssh): real sockets, real tasks, real kills.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any, List, Tuple

import pytest
import zmq
from hpilot.launcher import curve, wire
from hpilot.launcher.agent import map_cpus
from hpilot.launcher.api import LauncherEvent, NodeChanged, TaskStarted
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.launcher.pool import AgentPool, AgentStartError

from tests.conftest import wait_for

# ---- codec ----


def test_round_trip_every_message() -> None:
    msgs: List[wire.Message] = [
        wire.hello("n1", 12, (0, 1)), wire.Started("t", 5, 1.5), wire.Exited("t", 3, 1.0, 2.0, "why", 9),
        wire.Welcome(1.0), wire.Launch("t", ("a", "b"), {"K": "V"}, "/w", None, "o", None, (1, 2), 3.0),
        wire.Kill("t", "r"), wire.KillNow(), wire.Heartbeat(1.0), wire.Bye("done"),
    ]
    for m in msgs:
        assert wire.decode(wire.encode(m)) == m


@pytest.mark.parametrize("frame,why", [
    (b"\xff\xfe", "not JSON"), (b"[1]", "not a JSON object"), (b'{"type":"Nope"}', "unknown 'type'"),
    (b'{"type":"Kill","task_id":"t"}', "missing field reason"),
    (b'{"type":"Kill","task_id":"t","reason":"r","x":1}', "unknown field"),
    (b'{"type":"Started","task_id":"t","pid":"1","now":1}', "Started.pid: wrong type"),
    (b'{"type":"Launch","task_id":"t","argv":[],"env":null,"wd":"/"}', "non-empty list"),
    (b'{"type":"Launch","task_id":"t","argv":["a"],"env":{"K":1},"wd":"/"}', "strings only"),
    (b'{"type":"Launch","task_id":"t","argv":["a"],"env":null,"wd":"/","cpus":[-1]}', "CPU ids"),
])
def test_malformed_frames_are_refused_with_the_reason(frame: bytes, why: str) -> None:
    with pytest.raises(wire.WireError, match=why):
        wire.decode(frame)


def test_hello_speaks_our_version() -> None:
    h = wire.hello("n1", 1, (0,))
    assert wire.check_hello(h) is None
    assert "wire version 1" in (wire.check_hello(wire.Hello(1, "n1", 1, (0,))) or "")


def test_key_files_are_private_and_one_server_pair_per_run(tmp_path: Path) -> None:
    keys = curve.RunKeys.of(str(tmp_path))
    agent, client = keys.issue("agent"), keys.issue("client")
    assert agent.server == client.server and agent.peer_public != client.peer_public
    for name in ("server.key", "agent.key", "client.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    held = curve.read_peer_keys(agent.path)
    assert held.server == agent.server.public and held.public == agent.peer_public
    assert curve.read_pair(str(tmp_path / "server.key")) == agent.server
    assert keys.issue("agent") == agent  # once per run
    (tmp_path / "bad.key").write_text('{"server": "x"}')
    with pytest.raises(curve.KeyFileError, match="bad.key"):
        curve.read_peer_keys(str(tmp_path / "bad.key"))


def test_cpu_mapping() -> None:
    assert map_cpus((1,), (0, 1)) == ((1,), False)
    assert map_cpus((2, 3), (0, 1)) == ((0, 1), True)
    assert map_cpus((3,), (0, 1)) == ((1,), True)
    assert map_cpus((5,), ()) == ((5,), False)


# ---- real agents, started locally ----


def local_starter(node: str, wd: str, argv: Any) -> List[str]:
    return list(argv)


class Recorder:
    def __init__(self) -> None:
        self.exits: List[TaskExit] = []
        self.starts: List[Tuple[str, int]] = []
        self.nodes: List[Tuple[str, bool, str]] = []

    def take(self, events: List[LauncherEvent]) -> None:
        for ev in events:
            if isinstance(ev, TaskExit):
                self.exits.append(ev)
            elif isinstance(ev, TaskStarted):
                self.starts.append((ev.task_id, ev.pid))
            elif isinstance(ev, NodeChanged):
                self.nodes.append((ev.node, ev.up, ev.reason))


def make_pool(tmp_path: Path, rec: Recorder, nodes=("a", "b"), starter=local_starter, **kw: Any) -> AgentPool:
    keys = curve.RunKeys.of(str(tmp_path)).issue("agent")
    pool = AgentPool(list(nodes), wd=str(tmp_path), log_dir=str(tmp_path / "agents"),
                     keys=keys, starter=starter, advertise="127.0.0.1", **kw)
    pool.rec = rec  # type: ignore[attr-defined]
    return pool


def pump(pool: AgentPool, until, timeout: float = 15.0, what: str = "condition") -> None:
    def step() -> bool:
        pool.rec.take(pool.poll())  # type: ignore[attr-defined]
        return bool(until())
    wait_for(step, timeout, what)


@pytest.fixture
def pool(tmp_path: Path):
    rec = Recorder()
    p = make_pool(tmp_path, rec)
    p.rec = rec  # type: ignore[attr-defined]
    yield p
    p.close()


def req(task_id: str, node: str, argv: Tuple[str, ...], wd: str, **kw: Any) -> LaunchRequest:
    return LaunchRequest(task_id, argv, dict(os.environ), wd, node=node, **kw)


@pytest.mark.shell
def test_tasks_run_on_their_node_and_report(pool: AgentPool, tmp_path: Path) -> None:
    rec: Recorder = pool.rec  # type: ignore[attr-defined]
    out = str(tmp_path / "out")
    pool.launch(req("t1", "a", ("/bin/sh", "-c", "echo $HPILOT_NODE; exit 3"), str(tmp_path), stdout=out))
    pool.launch(req("t2", "b", ("/bin/true",), str(tmp_path), cpus=(0,)))
    pump(pool, lambda: len(rec.exits) == 2, what="two exits")
    codes = {e.task_id: e.exit_code for e in rec.exits}
    assert codes == {"t1": 3, "t2": 0}
    assert Path(out).read_text().strip() == "a"
    assert {t for t, _ in rec.starts} == {"t1", "t2"}
    assert pool.running == 0


@pytest.mark.shell
def test_malformed_frame_to_an_agent_is_dropped(pool: AgentPool, tmp_path: Path) -> None:
    rec: Recorder = pool.rec  # type: ignore[attr-defined]
    st = pool.nodes["a"]
    pool.router.send_multipart([st.ident, b"{not json", b'{"type":"Launch"}'])
    pool.launch(req("t", "a", ("/bin/true",), str(tmp_path)))
    pump(pool, lambda: rec.exits, what="the exit after bad frames")
    assert rec.exits[0].exit_code == 0
    assert "malformed frame" in (tmp_path / "agents" / "agent-a.log").read_text()


@pytest.mark.shell
@pytest.mark.parametrize("who", ["plain", "unknown key", "the client key"])
def test_a_stranger_without_the_agent_key_gets_nothing_in(pool: AgentPool, tmp_path: Path, who: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Refused in the CURVE handshake by the ZAP handler: not one of its frames reaches the pool."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    server = curve.read_pair(str(tmp_path / "server.key")).public
    if who == "unknown key":
        pair = curve.new_pair()
        curve.connect_with(s, curve.PeerKeys(server, pair.public, pair.secret))
    elif who == "the client key":  # a task's key: it must not pose as an agent
        curve.connect_with(s, curve.read_peer_keys(curve.RunKeys.of(str(tmp_path)).issue("client").path))
    monitor = s.get_monitor_socket(curve.MONITORED)
    guard = curve.Guard.of(ctx)
    refused = guard.refused_total  # before the connect: the refusal may come before the next line
    s.connect(pool.address)
    try:
        for frame in (wire.encode(wire.hello("a", 1, (0,))), b"garbage", wire.encode(wire.Exited("x", 0, 0.0, 0.0))):
            with contextlib.suppress(zmq.Again):  # queued while a connection is tried; never delivered
                s.send(frame, zmq.NOBLOCK)
        why: List[str] = []
        wait_for(lambda: bool(monitor.poll(10) and why.append(curve.handshake_failure(monitor) or "") is None
                              and any(why)), 10, "the failed handshake")
        if who != "plain":
            assert guard.refused_total > refused and "refused this client's key" in why[-1]
        caplog.set_level("DEBUG", logger="hpilot")
        for _ in range(20):
            pool.rec.take(pool.poll())  # type: ignore[attr-defined]
            assert not s.poll(10), "the service answered a peer without the agent key"
        logging.getLogger("hpilot.pool").warning("probe: the pool's log is seen here")
        seen = [r.getMessage() for r in caplog.records if r.name == "hpilot.pool"]
        assert seen[-1].startswith("probe")
        assert not [m for m in seen if "unknown peer" in m or "greet" in m], seen  # not one frame was read
        assert pool.nodes["a"].ready and pool.ready_nodes == ["a", "b"]
    finally:
        s.disable_monitor()
        monitor.close(0)
        s.close(0)


@pytest.mark.shell
def test_agent_killed_mid_run_fails_its_tasks_and_leaves(pool: AgentPool, tmp_path: Path) -> None:
    rec: Recorder = pool.rec  # type: ignore[attr-defined]
    pool.launch(req("long", "b", ("/bin/sleep", "60"), str(tmp_path)))
    pump(pool, lambda: rec.starts, what="the start")
    task_pid = rec.starts[0][1]
    agent = pool.nodes["b"].proc
    assert agent is not None
    os.kill(agent.pid, signal.SIGKILL)
    # a SIGKILLed agent cannot clean up, its guard does (launcher/guard.py)
    wait_for(lambda: not _alive(task_pid), 5, "the agent's guard to kill its task")
    pump(pool, lambda: rec.nodes, what="the node lost")
    assert rec.nodes == [("b", False, rec.nodes[0][2])]
    assert pool.ready_nodes == ["a"]
    assert not rec.exits, "fenced: the lost task is reported once the node's tasks are surely dead"
    pump(pool, lambda: rec.exits, timeout=30, what="the lost task")
    ex = rec.exits[0]
    assert ex.task_id == "long" and ex.exit_code != 0 and ex.lost
    assert ex.reason is not None and ex.reason.startswith("node b lost: its agent's process ended")
    pool.launch(req("again", "b", ("/bin/true",), str(tmp_path)))
    rec.take(pool.poll())
    assert "node b is not available" in (rec.exits[-1].reason or "") and rec.exits[-1].lost


@pytest.mark.shell
def test_an_agent_stopped_by_sigterm_leaves_its_node_a_moment_later(pool: AgentPool, tmp_path: Path) -> None:
    """Slurm's SIGTERM reaches the agents and the manager together: the node is not lost at
    once (its queued work would fail as no longer fitting); the run's own stop finds its tasks
    (a kill reports them at once); if no stop comes, the node is lost after the hold."""
    rec: Recorder = pool.rec  # type: ignore[attr-defined]
    pool.launch(req("t1", "b", ("/bin/sleep", "60"), str(tmp_path)))
    pool.launch(req("t2", "a", ("/bin/sleep", "60"), str(tmp_path)))
    pump(pool, lambda: len(rec.starts) == 2, what="the starts")
    for node in ("a", "b"):
        proc = pool.nodes[node].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGTERM)
    pump(pool, lambda: all(pool.nodes[n].stopping is not None for n in "ab"), what="the agents' goodbyes")
    assert rec.nodes == [] and pool.ready_nodes == [], "not lost yet, and no new task goes there"
    pool.kill("t2", "interrupted by SIGTERM")  # the run's own stop: t2 is reported at once
    pump(pool, lambda: rec.exits, what="the killed task's end")
    assert [e.task_id for e in rec.exits] == ["t2"] and rec.exits[0].lost
    # no stop for b: lost once the hold is over, its task once it is surely dead
    pump(pool, lambda: ("b", False) in [n[:2] for n in rec.nodes], what="node b lost after the hold")
    assert any(n[0] == "b" and "signal SIGTERM" in n[2] for n in rec.nodes), rec.nodes
    pump(pool, lambda: len(rec.exits) == 2, timeout=30, what="t1's end")
    assert rec.exits[1].task_id == "t1" and rec.exits[1].lost


@pytest.mark.shell
def test_a_sigterm_exit_seen_before_the_goodbye_still_holds_the_node(pool: AgentPool, tmp_path: Path) -> None:
    """The agent's goodbye and its exit race to the manager: when the exit is seen first (under
    load it was, now and then), its code alone says "stop signal" (128 + SIGTERM), and the node
    is held as for the goodbye, not lost at once."""
    rec: Recorder = pool.rec  # type: ignore[attr-defined]
    pool.launch(req("t1", "a", ("/bin/true",), str(tmp_path)))
    pump(pool, lambda: rec.exits, what="a task's end (the agent is at work)")
    proc = pool.nodes["a"].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGTERM)
    wait_for(lambda: proc.poll() is not None, 10, "the agent to exit")
    assert proc.returncode == 128 + signal.SIGTERM
    wait_for(lambda: pool._check_exits() > 0, 10, "the manager to see the exit")  # before any goodbye is read
    node = pool.nodes["a"]
    assert node.lost is None and node.stopping is not None, node.lost
    assert "stopped by signal SIGTERM" in node.stopping[1]


@pytest.mark.shell
def test_agent_dies_with_a_silent_service(tmp_path: Path) -> None:
    """The service stops talking (as after kill -9): the agent kills its task and exits."""
    rec = Recorder()
    p = make_pool(tmp_path, rec, nodes=("a",), heartbeat=0.2, misses=3)
    try:
        p.launch(req("long", "a", ("/bin/sleep", "60"), str(tmp_path)))
        pump(p, lambda: rec.starts, what="the start")
        task_pid = rec.starts[0][1]
        agent = p.nodes["a"].proc
        assert agent is not None
        # no more reap()/tick(): the service is silent from now on
        wait_for(lambda: agent.poll() is not None, 10, "the agent to exit on its own")
        wait_for(lambda: not _alive(task_pid), 5, "the task to be killed by its agent")
        assert "no word from the service" in (tmp_path / "agents" / "agent-a.log").read_text()
    finally:
        p.close()


@pytest.mark.shell
def test_a_stall_of_the_service_and_its_agent_loses_neither(tmp_path: Path) -> None:
    """Both stop running for 10 heartbeats (the service by not polling its pool, the agent by
    SIGSTOP), as in a machine's stall or ``scontrol suspend``: neither may count the other's
    silence over it (launcher/vigil.py).  The agent wakes first and must not give up its
    service; then the pool polls again and must not lose the agent's node; the task ends 0."""
    rec = Recorder()
    p = make_pool(tmp_path, rec, nodes=("a",), heartbeat=0.2, misses=3)
    try:
        p.launch(req("t", "a", ("/bin/sleep", "3"), str(tmp_path)))
        pump(p, lambda: rec.starts, what="the start")
        agent = p.nodes["a"].proc
        assert agent is not None
        os.kill(agent.pid, signal.SIGSTOP)
        with contextlib.suppress(subprocess.TimeoutExpired):  # the stall: a stimulus of a set length
            agent.wait(2.0)
        os.kill(agent.pid, signal.SIGCONT)
        log_text = lambda: (tmp_path / "agents" / "agent-a.log").read_text()  # noqa: E731
        wait_for(lambda: "did not run for" in log_text() or "no word from the service" in log_text(), 10,
                 "the agent to see its pause")
        pump(p, lambda: rec.exits, timeout=20, what="the task's end")
        assert [(e.task_id, e.exit_code) for e in rec.exits] == [("t", 0)], rec.exits
        assert not [n for n in rec.nodes if not n[1]], rec.nodes
        assert agent.poll() is None
    finally:
        p.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.shell
def test_agent_that_never_starts_times_out(tmp_path: Path) -> None:
    def starter(node: str, wd: str, argv: Any) -> List[str]:
        return ["/bin/sleep", "30"] if node == "b" else list(argv)

    with pytest.raises(AgentStartError, match=r"1 of 2 started, 2 needed.*b: no agent greeted the service "
                                              r"within 1s \(--nl-init-timeout\)"):
        make_pool(tmp_path, Recorder(), starter=starter, init_timeout=1.0)


@pytest.mark.shell
def test_threshold_starts_without_the_missing_node(tmp_path: Path) -> None:
    def starter(node: str, wd: str, argv: Any) -> List[str]:
        return ["/bin/false"] if node == "b" else list(argv)

    rec = Recorder()
    p = make_pool(tmp_path, rec, starter=starter, init_timeout=10.0, ready_threshold=0.5)
    try:
        pump(p, lambda: rec.nodes, what="node b reported down")
        assert rec.nodes[0][0] == "b" and not rec.nodes[0][1]
        assert p.ready_nodes == ["a"]
    finally:
        p.close()


@pytest.mark.shell
def test_starter_that_fails_gives_its_reason(tmp_path: Path) -> None:
    def starter(node: str, wd: str, argv: Any) -> List[str]:
        return ["/bin/sh", "-c", "echo 'srun: error: Unable to create step: Invalid node name'; exit 1"]

    with pytest.raises(AgentStartError, match="exit code 1.*Invalid node name"):
        make_pool(tmp_path, Recorder(), starter=starter, init_timeout=10.0)
