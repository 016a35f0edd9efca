"""find_service on a shared file system: a dead pid means "gone" only on the service's own host."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hpilot.governor.api.manager import find_service


def _address_file(wd: Path, host: str, pid: int, server_key: str = "") -> Path:
    run = wd / ".hpilot" / "run1"
    run.mkdir(parents=True)
    (wd / ".hpilot" / "latest").symlink_to("run1")
    (run / "address").write_text(json.dumps({"address": "tcp://10.0.0.1:5000", "pub": None, "pid": pid,
                                             "host": host, "server_key": server_key or None}))
    return run


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.shell
def test_a_service_on_another_node_is_found_with_its_key(tmp_path: Path) -> None:
    run = _address_file(tmp_path, "some-other-node", _dead_pid(), server_key="k" * 40)
    info = find_service(str(tmp_path))
    assert info is not None and info["address"] == "tcp://10.0.0.1:5000"
    assert info["key_file"] == os.path.join(os.path.realpath(run), "client.key")


@pytest.mark.shell
def test_a_dead_service_on_this_host_is_not_found(tmp_path: Path) -> None:
    _address_file(tmp_path, socket.gethostname(), _dead_pid())
    assert find_service(str(tmp_path)) is None
