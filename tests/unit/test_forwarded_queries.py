"""Client requests at a partition manager, forwarded to the governor: the pieces on real
in-process sockets (no processes).

- NetInterface's deferred path: answered later by token, or with an error at the
  timeout or when the owner exits; malformed requests are still answered at once; a
  handler that raises is an error answer, never fatal.
- PartitionLinks: a registered partition's ClientQuery becomes the core's ClientRequest
  (reply_to a ForwardedQuery) and its answer goes back as a ClientAnswer; a forwarded
  payload that is not JSON gets an error answer; an unregistered sender is not heard.
- PartitionManager: forwards as ClientQuery and turns a malformed ClientAnswer into an
  error answer for the waiting client.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import zmq
from hpilot.governor.core.events import ClientRequest
from hpilot.governor.service.net import NetInterface
from hpilot.governor.service.partitions import ForwardedQuery, PartitionLinks
from hpilot.launcher import curve
from hpilot.launcher.dryrun import DryRunLauncher
from hpilot.partition import wire
from hpilot.partition.core import PartitionConfig, PartitionCore
from hpilot.partition.manager import PartitionManager
from hpilot.partition.models import EnvContext
from hpilot.partition.resources import local_resources

pytestmark = [pytest.mark.shell, pytest.mark.timeout(30)]
CTX = zmq.Context.instance()


def _until(what: str, predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Client:
    def __init__(self, address: str) -> None:
        self.sock = CTX.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address.replace("0.0.0.0", "127.0.0.1"))

    def send(self, payload: Any) -> None:
        self.sock.send(payload if isinstance(payload, bytes) else json.dumps(payload).encode())

    def recv(self, timeout: float = 5.0) -> Dict[str, Any]:
        assert self.sock.poll(int(timeout * 1000)), "no answer"
        answer: Dict[str, Any] = json.loads(self.sock.recv())
        return answer

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def net() -> Iterator[NetInterface]:
    n = NetInterface("127.0.0.1", None, None, None, None, False)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def client(net: NetInterface) -> Iterator[Client]:
    c = Client(net.endpoints.address)
    try:
        yield c
    finally:
        c.close()


class Deferring:
    """A handler that answers nothing now and remembers what it was given."""

    def __init__(self, now: Optional[Dict[str, Any]] = None, fail: bool = False) -> None:
        self.seen: List[Any] = []
        self.now = now
        self.fail = fail

    def __call__(self, payload: Any, token: int) -> Optional[Dict[str, Any]]:
        if self.fail:
            raise RuntimeError("a bug")
        self.seen.append((payload, token))
        return self.now


def _take(net: NetInterface, handle: Any, timeout: float = 30.0) -> None:
    _until("a request", lambda: net.process_deferred(handle, timeout) > 0)


def test_deferred_answer_reaches_the_waiting_client(net: NetInterface, client: Client) -> None:
    handle = Deferring()
    client.send({"request": "listJobs"})
    _take(net, handle)
    [(payload, token)] = handle.seen
    assert payload == {"request": "listJobs"} and net.pending == 1
    assert not client.sock.poll(50)  # nothing yet
    assert net.answer(token, {"code": 0, "data": {"jobs": {}}})
    assert client.recv() == {"code": 0, "data": {"jobs": {}}}
    assert net.pending == 0 and net.due_in() is None
    assert not net.answer(token, {"code": 0})  # a late second answer is dropped


def test_handler_may_answer_at_once_in_deferred_mode(net: NetInterface, client: Client) -> None:
    client.send({"request": "status"})
    _take(net, Deferring(now={"code": 1, "message": "not now"}))
    assert client.recv() == {"code": 1, "message": "not now"} and net.pending == 0


def test_deferred_request_times_out_with_an_error(net: NetInterface, client: Client) -> None:
    client.send({"request": "jobStatus", "jobNames": ["a"]})
    _take(net, Deferring(), timeout=0.05)
    due = net.due_in()
    assert due is not None and due <= 0.05
    _until("the timeout", lambda: net.expire("no answer from the governor within 0.05s") == 1)
    answer = client.recv()
    assert answer["code"] == 1 and "no answer from the governor" in answer["message"]
    assert net.pending == 0


def test_pending_requests_fail_when_the_owner_exits(net: NetInterface) -> None:
    clients = [Client(net.endpoints.address) for _ in range(3)]
    try:
        handle = Deferring()
        for c in clients:
            c.send({"request": "listJobs"})
        _until("three requests", lambda: net.process_deferred(handle, 30) >= 0 and len(handle.seen) == 3)
        assert net.expire("not yet") == 0  # none is due
        assert net.fail_pending("the partition manager exits") == 3
        for c in clients:
            assert c.recv() == {"code": 1, "message": "the partition manager exits"}
    finally:
        for c in clients:
            c.close()


def test_malformed_and_failing_requests_are_answered_not_fatal(net: NetInterface, client: Client) -> None:
    client.send(b"{not json")
    _take(net, Deferring())
    assert "not valid JSON" in client.recv()["message"] and net.pending == 0
    client.send({"request": "listJobs"})
    _take(net, Deferring(fail=True))
    assert "internal error" in client.recv()["message"] and net.pending == 0


def test_sync_process_is_unchanged(net: NetInterface, client: Client) -> None:
    client.send({"request": "listJobs", "secret": "ignored on loopback"})
    seen: List[Any] = []

    def handle(payload: Any) -> Dict[str, Any]:
        seen.append(payload)
        return {"code": 0, "data": {}}

    _until("a request", lambda: net.process(handle) > 0)
    assert client.recv() == {"code": 0, "data": {}} and seen == [{"request": "listJobs"}]
    assert net.pending == 0


def test_off_loopback_the_client_port_cannot_start_without_keys() -> None:
    """Off loopback the port is CURVE or nothing (it is tested on real sockets in a network
    namespace: tests/integration/test_curve.py); the check comes before any bind."""
    with pytest.raises(OSError, match="CURVE keys"):
        NetInterface("0.0.0.0", None, None, None, None, False)


def test_an_old_clients_secret_field_never_travels_on(net: NetInterface, client: Client) -> None:
    handle = Deferring()
    client.send({"request": "listJobs", "secret": "an old hpilot's bearer token"})
    _take(net, handle)
    [(payload, _)] = handle.seen
    assert payload == {"request": "listJobs"}


# ---- the governor's side ----


def _dealer(links: PartitionLinks) -> zmq.Socket:
    sock = CTX.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    curve.connect_with(sock, curve.read_peer_keys(links.keys.path))  # the run's partition key
    sock.connect(links.address)
    return sock


def _events(links: PartitionLinks, n: int = 1) -> List[Any]:
    got: List[Any] = []

    def more() -> bool:
        got.extend(links.process(time.time()))
        return len(got) >= n

    _until(f"{n} event(s)", more)
    return got


def _next(sock: zmq.Socket, links: Optional[PartitionLinks] = None) -> Any:
    """The governor's next message; ``links`` given: process its input meanwhile (no event expected)."""
    if links is None:
        assert sock.poll(5000), "nothing from the governor"
    else:
        _until("the governor's answer", lambda: links.process(time.time()) == [] and sock.poll(10))
    return wire.decode(sock.recv())


def test_links_turn_a_forwarded_query_into_a_client_request(links: PartitionLinks) -> None:
    sock = _dealer(links)
    try:
        sock.send(wire.encode(wire.register("p", "h", 1, (("n", 1),), ())))
        _events(links)  # joined
        assert isinstance(_next(sock), wire.Registered)
        sock.send(wire.encode(wire.ClientQuery(7, json.dumps({"request": "jobInfo", "jobNames": ["j"]}))))
        [ev] = _events(links)
        assert isinstance(ev, ClientRequest) and ev.payload == {"request": "jobInfo", "jobNames": ["j"]}
        assert isinstance(ev.reply_to, ForwardedQuery) and ev.reply_to.partition == "p" and ev.reply_to.qid == 7
        links.answer(ev.reply_to, {"code": 0, "data": {"x": 1}})
        answer = _next(sock)
        assert answer == wire.ClientAnswer(7, json.dumps({"code": 0, "data": {"x": 1}}))
        # not JSON: answered with an error at once, no event, the link still fine
        sock.send(wire.encode(wire.ClientQuery(8, "{nope")))
        answer = _next(sock, links)
        assert isinstance(answer, wire.ClientAnswer) and answer.qid == 8
        assert json.loads(answer.response)["code"] == 1 and "not valid JSON" in answer.response
        assert links.registered == 1
    finally:
        sock.close(0)


def test_links_ignore_queries_from_unregistered_partitions(links: PartitionLinks) -> None:
    sock = _dealer(links)
    try:
        sock.send(wire.encode(wire.ClientQuery(1, json.dumps({"request": "finish"}))))
        assert isinstance(_next(sock, links), wire.Bye)  # told to stop; no request reached the core
        assert links.process(time.time()) == []
    finally:
        sock.close(0)


# ---- the partition manager's side ----


def test_partition_manager_forwards_and_survives_a_malformed_answer(tmp_path: Path, net: NetInterface,
                                                                     client: Client) -> None:
    gov = CTX.socket(zmq.ROUTER)
    gov.setsockopt(zmq.LINGER, 0)
    (tmp_path / "gov").mkdir()
    keys = curve.RunKeys.of(str(tmp_path / "gov")).issue("partition")
    curve.serve(gov, keys.server, [keys.peer_public], "partition")
    port = gov.bind_to_random_port("tcp://127.0.0.1")
    core = PartitionCore(local_resources("1"), PartitionConfig(str(tmp_path), EnvContext(base_env=dict(os.environ))))
    mgr = PartitionManager(f"tcp://127.0.0.1:{port}", curve.read_peer_keys(keys.path), "p", (), core,
                           lambda: DryRunLauncher(), client=net, query_timeout=30)
    try:
        assert gov.poll(5000)
        ident, frame = gov.recv_multipart()
        assert isinstance(wire.decode(frame), wire.Register)
        answers = []
        clients = [client, Client(net.endpoints.address)]
        for c, request in zip(clients, ({"request": "listJobs"}, {"request": "jobStatus", "jobNames": ["a"]})):
            c.send(request)
            _until("the request", lambda: net.process_deferred(mgr._forward, 30) > 0)
            assert gov.poll(5000)
            ident, frame = gov.recv_multipart()
            query = wire.decode(frame)
            assert isinstance(query, wire.ClientQuery) and json.loads(query.payload) == request
            answers.append(query.qid)
        # a good answer to the first; a malformed one (not JSON, then not an object) to the second
        gov.send_multipart([ident, wire.encode(wire.ClientAnswer(answers[0], '{"code": 0, "data": {}}'))])
        _until("the answer", lambda: mgr.sock.poll(10) and (mgr._recv() or True) and net.pending == 1)
        assert client.recv() == {"code": 0, "data": {}}
        gov.send_multipart([ident, wire.encode(wire.ClientAnswer(answers[1], "[1, 2]"))])
        _until("the answer", lambda: mgr.sock.poll(10) and (mgr._recv() or True) and net.pending == 0)
        bad = clients[1].recv()
        assert bad["code"] == 1 and "malformed" in bad["message"]
        # an answer for a query nobody waits for is dropped quietly
        gov.send_multipart([ident, wire.encode(wire.ClientAnswer(999, '{"code": 0}'))])
        _until("the stray answer", lambda: mgr.sock.poll(10) and (mgr._recv() or True))
        clients[1].close()
    finally:
        mgr.launcher.close()
        mgr.sock.close(0)
        gov.close(0)
