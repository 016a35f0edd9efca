"""Hostile frames on real sockets: after each one, the service still answers a normal request.

A real ``hpilot service --net`` on loopback (the client socket takes plain QCG JSON from
anyone on the node) gets the frames that used to kill it (JSON nested 1,000 deep, a
5,000-digit integer), malformed envelopes, a frame over the size limit and
hypothesis-made frames; a real governor gets garbage and mutated reports from a
registered partition.  Nothing dies, nothing is half-done, and the next normal request
is answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, List

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_for
from tests.integration.test_net import Service, ask, send_raw, start_service, stop_service
from tests.unit.test_decoder_fuzz import FRAMES, KILLERS, mutated

pytestmark = pytest.mark.integration

LIVE = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("hostile") / "wd")
    try:
        yield svc
    finally:
        stop_service(svc)


def still_serves(svc: Service) -> None:
    assert svc.proc.poll() is None, f"the service died: {svc.err.read_text()[-2000:]}"
    answer = ask(svc.connect, {"request": "status"}, timeout=10)
    assert answer["code"] == 0, answer


@pytest.mark.parametrize("frame", KILLERS, ids=lambda f: repr(f[:12]))
def test_a_killer_frame_gets_an_error_answer_and_the_service_lives(target: Service, frame: bytes) -> None:
    answer = send_raw(target.connect, [frame])
    assert answer is not None, "every single-frame request gets an answer"
    assert json.loads(answer[0])["code"] != 0
    still_serves(target)


@pytest.mark.parametrize("frames,kind", [
    ([b"", b""], zmq.DEALER), ([b"a", b"b", b"c"], zmq.REQ), ([b""], zmq.DEALER), ([b"x" * 10, b""], zmq.DEALER),
    ([b'{"request": "status"}', b'{"request": "status"}'], zmq.REQ),
])
def test_malformed_envelopes_are_answered_or_dropped(target: Service, frames: List[bytes], kind: int) -> None:
    send_raw(target.connect, frames, kind=kind, timeout=1)
    still_serves(target)


def test_a_frame_over_the_size_limit_closes_that_connection_only(target: Service) -> None:
    from hpilot.governor.service.net import MAX_MESSAGE

    assert send_raw(target.connect, [b" " * (MAX_MESSAGE + 1)], timeout=2) is None
    still_serves(target)


@pytest.mark.parametrize("payload", [
    {"request": "submit", "jobs": [{"name": "\ud800", "execution": {"exec": "/bin/true"}}]},
    {"request": "submit", "jobs": [{"name": "a", "execution": {"exec": "/bin/true", "args": ["\udfff"]}}]},
    {"request": "submit", "jobs": [{"name": "deep", "execution": {"exec": "/bin/true"},
                                    "attributes": json.loads("[" * 60 + "]" * 60)}]},
    {"request": "jobStatus", "jobNames": [10 ** 90]},
    {"request": "submit", "jobs": [{"name": "big", "execution": {"exec": "/bin/true"},
                                    "iteration": {"start": 0, "stop": 10 ** 90}}]},
], ids=["surrogate-name", "surrogate-arg", "deep-attributes", "huge-name", "huge-iteration"])
def test_requests_no_file_could_hold_are_refused_and_nothing_runs(target: Service, payload: Any) -> None:
    frame = json.dumps(payload).encode()  # ensure_ascii: a lone surrogate travels as its \\u escape
    answer = send_raw(target.connect, [frame])
    assert answer is not None
    reply = json.loads(answer[0])
    if reply["code"] == 0:  # accepted: then it must be a job the service can run and record
        assert payload["jobs"][0]["name"] == "deep"
    still_serves(target)
    assert "\\ud800" not in json.dumps(ask(target.connect, {"request": "listJobs"})["data"])


def test_a_flood_of_bad_frames_does_not_flood_the_log(target: Service) -> None:
    """One line a second at most, with the count: 500 bad frames cannot fill the disk."""
    def malformed_lines() -> int:
        return sum("malformed request(s)" in line for line in (target.run_dir / "service.log").read_text().splitlines())

    before = malformed_lines()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(target.connect)
    try:
        for _ in range(500):
            sock.send_multipart([b"", b"[" * 100 + b"]" * 100])
        got = 0
        while got < 500 and sock.poll(10_000):
            sock.recv_multipart()
            got += 1
        assert got == 500, "every bad frame gets its error answer"
    finally:
        sock.close(0)
    still_serves(target)
    assert malformed_lines() - before <= 30, "the log got a line per frame"


@LIVE
@given(st.one_of(FRAMES, mutated({"request": "submit", "jobs": [
    {"name": "m", "execution": {"exec": "/bin/true", "args": ["${it}"], "stdout": "m.${it}"},
     "iteration": {"stop": 2}, "resources": {"numCores": {"exact": 1}}}]})))
def test_any_frame_on_the_client_socket(target: Service, frame: bytes) -> None:
    answer = send_raw(target.connect, [frame])
    assert answer is not None and isinstance(json.loads(answer[0])["code"], int)
    still_serves(target)


# ---- the partition link: a registered partition that sends garbage ----


def test_governor_survives_garbage_from_a_registered_partition(wd: Path) -> None:
    from hpilot.partition import wire

    from tests.integration.test_governor import Cluster

    cluster = Cluster(wd)
    try:
        cluster.start_governor()
        run = (wd / ".hpilot" / "latest").resolve()
        link = fake_partition(cluster.ctx, run, "evil")
        try:
            junk = [*KILLERS, b"[1, 2]", b'[["f", "nojob", 0, 0, 1.0, 2.0, "n", "/", 1, null, false]]',
                    wire.encode(wire.ClientQuery(1, "[" * 500 + "]" * 500)),
                    wire.encode(wire.ClientQuery(2, '{"request": ' + "9" * 5000 + "}")),
                    b'{"@": "IterationFinished", "job": "x", "iteration": 1e999}']
            for frame in junk:
                link.send(frame)
            answers = []
            while link.poll(3000):
                msg = wire.decode(link.recv())
                if isinstance(msg, wire.ClientAnswer):
                    answers.append(json.loads(msg.response))
                    if len(answers) == 2:
                        break
            assert len(answers) == 2 and all(a["code"] != 0 for a in answers), answers  # both get an error
            assert cluster.request({"request": "status"})["code"] == 0
            assert cluster.gov is not None and cluster.gov.poll() is None
            names = [p["name"] for p in cluster.request({"request": "resourcesInfo"})["data"]["partitions"]]
            assert names == ["evil"]
        finally:
            link.close(0)
    finally:
        cluster.stop()


def fake_partition(ctx: zmq.Context, run: Path, name: str) -> zmq.Socket:
    """A DEALER registered with the governor of ``run`` as a partition manager would (with the
    run's partition key: a stranger's frames never get this far, tests/integration/test_curve.py)."""
    import os

    from hpilot.launcher import curve
    from hpilot.partition import wire

    address = (run / "partitions.address").read_text().strip()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, os.urandom(16))
    curve.connect_with(sock, curve.read_peer_keys(str(run / "partition.key")))
    sock.connect(address)
    sock.send(wire.encode(wire.register(name, "h", os.getpid(), (("n1", 1),), ())))
    got: List[Any] = []
    wait_for(lambda: bool(sock.poll(100) and got.append(wire.decode(sock.recv())) is None and got), 10,
             "the registration's answer")
    assert isinstance(got[0], wire.Registered), got
    return sock
