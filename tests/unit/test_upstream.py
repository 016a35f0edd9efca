"""UpstreamWatch on real sockets: a peer process killed with ``kill -9`` is known gone as soon
as reconnects to its port are refused, long before the grace (CI saw a partition manager's
srun outlive the 1 s bound when only the grace said so); a peer that is back clears it.  And
a partition manager whose governor dies before it registered exits as promptly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import zmq
from hpilot.launcher import curve
from hpilot.launcher.dryrun import DryRunLauncher
from hpilot.launcher.upstream import REFUSED, UpstreamWatch
from hpilot.partition.core import PartitionConfig, PartitionCore
from hpilot.partition.manager import PartitionManager
from hpilot.partition.models import EnvContext
from hpilot.partition.resources import local_resources

from tests.conftest import wait_for

pytestmark = [pytest.mark.shell, pytest.mark.timeout(60)]

SERVER = """
import sys, zmq
s = zmq.Context().socket(zmq.ROUTER)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    s.send_multipart(s.recv_multipart())  # an echo: the client knows the handshake is done
"""


def _serve(port: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", SERVER, f"tcp://127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "bound"
    return p


@pytest.fixture
def dealer() -> Iterator[zmq.Socket]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    yield sock
    sock.close(0)
    ctx.term()


def _pump(watch: UpstreamWatch, now: float) -> None:
    if watch.monitor.poll(10):
        watch.process(now)


def test_a_killed_peer_is_gone_once_its_port_refuses_not_after_the_grace(dealer: zmq.Socket) -> None:
    port = dealer.bind_to_random_port("tcp://127.0.0.1")  # a free port: taken back at once
    dealer.unbind(dealer.last_endpoint)
    server = _serve(port)
    watch = UpstreamWatch(dealer, grace=3600.0)  # the grace cannot be what says it
    try:
        dealer.connect(f"tcp://127.0.0.1:{port}")
        _echoed(dealer)
        server.kill()
        server.wait()
        wait_for(lambda: (_pump(watch, 1.0), watch.gone(1.0))[1], 10, "the refusals")
        assert watch.refused >= REFUSED
        assert watch.due_in(1.0) > 3000  # the grace alone would have waited an hour
    finally:
        watch.close()
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_peer_back_on_its_port_clears_the_refusals(dealer: zmq.Socket) -> None:
    port = dealer.bind_to_random_port("tcp://127.0.0.1")
    dealer.unbind(dealer.last_endpoint)
    first = _serve(port)
    watch = UpstreamWatch(dealer, grace=3600.0)
    second = None
    try:
        dealer.connect(f"tcp://127.0.0.1:{port}")
        _echoed(dealer)
        first.kill()
        first.wait()
        wait_for(lambda: (_pump(watch, 1.0), watch.refused >= 1)[1], 10, "a refusal")
        second = _serve(port)
        wait_for(lambda: (_pump(watch, 2.0), not watch.down)[1], 10, "the new handshake")
        assert watch.refused == 0 and not watch.gone(2.0)
    finally:
        watch.close()
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def _echoed(sock: zmq.Socket) -> None:
    """One round trip: the connection is up and the handshake done."""
    sock.send(b"ping")
    assert sock.poll(10_000), "no echo from the peer"
    assert sock.recv() == b"ping"


GOVERNOR = """
import sys, zmq
from hpilot.launcher import curve
keys = curve.RunKeys.of(sys.argv[1]).issue("partition")
ctx = zmq.Context()
s = ctx.socket(zmq.ROUTER)
curve.serve(s, keys.server, [keys.peer_public], "partition")
mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
print(s.bind_to_random_port("tcp://127.0.0.1"), flush=True)
mon.recv_multipart()  # a partition manager connected: it is never answered (never registered)
print("connected", flush=True)
while True:
    s.recv_multipart()
"""


def test_a_manager_whose_governor_dies_while_its_launcher_starts_exits(tmp_path: Path) -> None:
    """Its agents may take seconds to start; a governor killed meanwhile, before the manager
    registered, is seen gone (the manager connected first), not after the register timeout."""
    gov = subprocess.Popen([sys.executable, "-c", GOVERNOR, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert gov.stdout is not None
    port = int(gov.stdout.readline())

    def slow_launcher() -> DryRunLauncher:  # the governor dies while it starts
        assert gov.stdout is not None and gov.stdout.readline().strip() == "connected"
        gov.kill()
        gov.wait()
        return DryRunLauncher()

    core = PartitionCore(local_resources("1"), PartitionConfig(str(tmp_path), EnvContext(base_env=dict(os.environ))))
    try:
        mgr = PartitionManager(f"tcp://127.0.0.1:{port}", curve.read_peer_keys(str(tmp_path / "partition.key")), "p",
                               (), core, slow_launcher, register_timeout=3600)
        assert mgr.run() == 1
        assert mgr.stop == "the governor is gone"
    finally:
        if gov.poll() is None:
            gov.kill()
            gov.wait()
