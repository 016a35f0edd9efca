"""Is the process at the other end of a DEALER still there?  Its TCP connection says so at once.

A partition manager's governor and a node agent's manager are other processes, often on
other nodes.  When one dies (``kill -9``, a crash), the kernel closes its sockets and the
peer's connection ends at once; ZeroMQ then reconnects every 100 to 200 ms, in vain: the
port is closed, each attempt is refused at once.  So the process is gone when, after a
disconnect, ``REFUSED`` reconnects in a row were refused (about 0.3 s), or no new handshake
came within ``grace`` seconds (0.5: a host that answers nothing, not even a refusal).
Whoever depends on it then stops starting work and kills its tasks, well within the 1 s
the run's guarantee gives (heartbeats, kept as well, cover a host that vanished without
closing anything: a crash of the whole node, a cut network).

A peer that is alive keeps its port bound for its whole life: a reconnect to it is never
refused, and one that lost its connection in a network blip is back well within ``grace``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Optional

import zmq

# CLOSED, while down: a reconnect attempt failed (refused) and its descriptor was closed
EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_CLOSED
# ZeroMQ retries a lost connection every 100 to 200 ms: a live peer is back well within this
GRACE = 0.5
REFUSED = 2  # reconnects refused in a row: nobody listens there any more


class UpstreamWatch:
    def __init__(self, sock: zmq.Socket, grace: float = GRACE) -> None:
        self.grace = grace
        # an address of its own: an earlier monitor of the socket (the agent's greeting) keeps its own bound
        self.monitor = sock.get_monitor_socket(EVENTS, addr=f"inproc://hpilot-upstream-{id(self):x}")
        self.down_since: Optional[float] = None
        self.refused = 0  # reconnects refused since the disconnect
        self._sock = sock

    def process(self, now: float) -> None:
        """Read the connection's events (call when :attr:`monitor` is readable)."""
        from zmq.utils.monitor import recv_monitor_message

        while self.monitor.poll(0):
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except (zmq.ZMQError, ValueError):
                return
            kind = event["event"]
            if kind == zmq.EVENT_DISCONNECTED:
                if self.down_since is None:
                    self.down_since, self.refused = now, 0
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.down_since, self.refused = None, 0
            elif kind == zmq.EVENT_CLOSED and self.down_since is not None:
                self.refused += 1

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def gone(self, now: float) -> bool:
        return self.down_since is not None and (self.refused >= REFUSED or now - self.down_since >= self.grace)

    def due_in(self, now: float) -> Optional[float]:
        """Seconds until :meth:`gone` may turn true by the grace alone (None: connected); a
        refusal comes as a monitor event, which wakes the poll by itself."""
        return None if self.down_since is None else max(0.0, self.down_since + self.grace - now)

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self.monitor.close(0)


def parent_watch(pid: Optional[int]) -> Optional[int]:
    """A descriptor that becomes readable when ``pid`` (the process that started this one)
    exits: a pidfd, which the kernel makes readable however the parent ended.  None: nothing
    to watch (no pid, or a kernel before 5.3)."""
    if pid is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:  # already gone
        return os.open(os.devnull, os.O_RDONLY)  # readable at once: finish now
