"""Every run can be watched: requests and events on local sockets in the run dir.

Any running hpilot (``run``, ``service``, single or governor mode) answers the client
commands (``hpilot status``, ``top``, ``wait`` ...) from its working directory, with
or without ``--net``: a ZeroMQ ROUTER on ``ipc://<run dir>/ctl`` takes the same
QCG-PilotJob requests as the network port, and an XPUB on ``ipc://<run dir>/events``
publishes the same events.  ``<run dir>/local`` says where they are, with the pid
and host of the service, so that a client finds them and can tell a live run from
a dead one and a run on another node.

Who may connect: only the owner.  A Unix socket is reached through its path, so the
kernel checks search permission on every directory of it and write permission on
the socket itself.  The run dir is made 0700 and the sockets 0600 before anyone is
told where they are, so another user gets EACCES at ``connect()``; no secret and no
CURVE is needed on these sockets (tests/integration/test_local_port.py checks it as
the user ``nobody``).

A Unix socket path is limited to 107 bytes.  A run dir deep in a project tree can
be longer; then the sockets live in a private directory (``$XDG_RUNTIME_DIR`` or the
temp dir, ``hpilot-<uid>``, 0700 and owned by us, else refused) and the run dir
holds symlinks to them.

Events are only built while someone listens: the XPUB's subscription messages say
when a first client subscribes and when the last one leaves (:attr:`listening`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import tempfile
from typing import Any, Dict, List, Optional

import zmq
from hpilot.governor.service import qcgevents
from hpilot.governor.service.net import MAX_MESSAGE, Endpoints, NetInterface
from hpilot.launcher.private import write_private

log = logging.getLogger("hpilot.local")

LOCAL_FILE = "local"
CTL, EVENTS = "ctl", "events"
MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class LocalPortError(OSError):
    """The local sockets could not be made (the run still goes on without them)."""


class LocalPort(NetInterface):
    """A NetInterface on ipc:// sockets: the same request handling, its own access rule."""

    def __init__(self, run_dir: str) -> None:  # noqa: D107 - binds ipc endpoints instead of tcp ones
        self.ctx: zmq.Context = zmq.Context.instance()
        self.keys = None  # no CURVE: the 0700 run dir is the access check
        self.run_dir = run_dir
        self._links: List[str] = []
        self._paths: List[str] = []
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self.pub: Optional[zmq.Socket] = self.ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # the welcome: as NetInterface's
        self.pub.setsockopt(zmq.SNDHWM, 100_000)
        self.topics = qcgevents.Topics()  # QCG-PilotJob topics someone subscribed to (as NetInterface)
        self.instance_id: Optional[str] = None
        self._subscribed: set = set()  # every topic with a subscriber: someone listens
        try:
            private_dir(run_dir)
            address = self._bind(self.router, CTL)
            pub = self._bind(self.pub, EVENTS)
        except (OSError, zmq.ZMQError) as e:
            self.close()
            raise LocalPortError(f"no local sockets in {run_dir}: {e}") from None
        self.endpoints = Endpoints(address, pub, None)
        self.refused = 0
        self._token = 0
        self._pending: Dict[int, Any] = {}

    def _bind(self, sock: zmq.Socket, name: str) -> str:
        path = socket_path(self.run_dir, name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a socket file left by a killed run of the same id
        sock.bind(f"ipc://{path}")
        self._paths.append(path)
        os.chmod(path, 0o600)
        link = os.path.join(self.run_dir, name)
        if path != link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(path, link)
            self._links.append(link)
        return f"ipc://{path}"

    @property
    def listening(self) -> bool:
        """Someone is subscribed to events (so they are worth building)."""
        return bool(self._subscribed)

    def subscription(self, msg: bytes) -> None:
        """Who listens decides whether events are made."""
        super().subscription(msg)
        if msg[:1] == b"\x01":
            self._subscribed.add(msg[1:])
        elif msg[:1] == b"\x00":
            self._subscribed.discard(msg[1:])

    def write_address(self, run_dir_path: str) -> str:
        path = os.path.join(run_dir_path, LOCAL_FILE)
        info = dict(self.endpoints.to_json(), host=socket.gethostname())
        write_private(path, json.dumps(info))
        return path

    def close(self) -> None:
        super().close()
        for path in self._paths + self._links:  # ZeroMQ leaves the socket files behind
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._paths, self._links = [], []
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self.run_dir, LOCAL_FILE))


def private_dir(path: str) -> None:
    """Make ``path`` reachable by its owner only (0700)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, 0o700)


def socket_path(run_dir: str, name: str) -> str:
    """``<run dir>/<name>``, or a short path in a private dir when that is too long for a socket."""
    path = os.path.join(run_dir, name)
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    short = os.path.join(base, f"hpilot-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(short, 0o700)
    st = os.lstat(short)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        raise LocalPortError(f"{short} is not a private directory of this user (want mode 0700, owner uid "
                             f"{os.getuid()}): refusing to put sockets there")
    digest = hashlib.sha1(os.fsencode(os.path.abspath(run_dir))).hexdigest()[:16]
    path = os.path.join(short, f"{digest}-{name}")
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise LocalPortError(f"{path}: too long for a Unix socket")
    return path
