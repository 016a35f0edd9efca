"""A private network namespace for tests off loopback: no address of the machine is ever used.

The namespace is held open by a sleeping process (``unshare -n``; ``unshare -rn`` when
not root) and holds a veth pair ``d0``/``d1`` with ``10.211.0.1/24`` on ``d0``: an
interface name and an address that are not loopback, reachable only inside.  Commands
run in it through ``nsenter``; the namespace disappears with its holder, so a test that
dies leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence

IFACE = "d0"
ADDRESS = "10.211.0.1"
_SETUP = (f"ip link set lo up && ip link add {IFACE} type veth peer name d1 && ip addr add {ADDRESS}/24 dev {IFACE} "
          f"&& ip link set {IFACE} up && ip link set d1 up && echo ready && exec sleep 86400")


class NetNSUnavailable(Exception):
    pass


class NetNS:
    def __init__(self) -> None:
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise NetNSUnavailable(f"no {tool} command")
        self.root = os.geteuid() == 0
        self.holder = subprocess.Popen(["unshare", "-n" if self.root else "-rn", "sh", "-c", _SETUP],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()
        if line.strip() != b"ready":
            self.close()
            err = self.holder.stderr.read().decode(errors="replace").strip() if self.holder.stderr else ""
            raise NetNSUnavailable(f"cannot make a network namespace with a veth pair: {err or 'no reason given'}")

    def argv(self, cmd: Sequence[str]) -> List[str]:
        enter = ["nsenter", "-t", str(self.holder.pid), "-n"]
        if not self.root:
            enter += ["-U", "--preserve-credentials"]
        return [*enter, "--", *cmd]

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(self.argv(cmd), **kw)

    def run(self, cmd: Sequence[str], timeout: float = 60, env: Optional[Dict[str, str]] = None,
            **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(cmd), capture_output=True, text=True, timeout=timeout, env=env, **kw)

    def python(self, args: Sequence[str], **kw: Any) -> subprocess.CompletedProcess:
        return self.run([sys.executable, *args], **kw)

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(10)
        for f in (self.holder.stdout, self.holder.stderr):
            if f is not None:
                f.close()
