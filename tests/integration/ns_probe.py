"""Probes that run inside the test network namespace (tests/netns.py) and print one JSON line.

``python ns_probe.py COMMAND ...``; every command ends by itself (deadlines, no sleeps):

- ``ask ADDRESS JSON [--keys F]``: one request, as a QCG client (plain REQ) or with CURVE
  keys; ``{"answer": ...}`` or ``{"error": why}`` (a failed handshake, or no answer).
- ``listen PUB [--keys F] [--until-job NAME] [--seconds S]``: subscribe to the events;
  ``{"welcome": bool, "events": [...]}``.
- ``register ADDRESS [--keys F] [--id NAME]``: register as a partition manager would;
  ``{"answer": "Registered"|"Refused"|..., "why": ...}`` or ``{"error": why}``.
- ``replay ADDRESS --keys F --id NAME``: register for real through a recording TCP relay,
  leave, then send the recorded bytes again on a new connection (as they were, and with
  one byte changed); ``{"genuine": ..., "replayed": {...}, "forged": {...}}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import zmq
from hpilot.launcher import curve
from hpilot.partition import wire


def _socket(kind: int, keys: Optional[str]) -> zmq.Socket:
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if keys:
        curve.connect_with(sock, curve.read_peer_keys(keys))
    return sock


def _wait(sock: zmq.Socket, monitor: zmq.Socket, seconds: float) -> Optional[str]:
    """None when ``sock`` has input; else why not (a failed handshake, or the time ran out)."""
    deadline = time.monotonic() + seconds
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    while time.monotonic() < deadline:
        ready = dict(poller.poll(100))
        if sock in ready:
            return None
        why = curve.handshake_failure(monitor) if monitor in ready else None
        if why:
            return f"handshake failed: {why}"
    return f"no answer in {seconds:g}s"


def ask(args: argparse.Namespace) -> Dict[str, Any]:
    sock = _socket(zmq.REQ, args.keys)
    monitor = sock.get_monitor_socket(curve.MONITORED)
    sock.connect(args.address)
    sock.send(args.json.encode())
    why = _wait(sock, monitor, args.seconds)
    if why:
        return {"error": why}
    return {"answer": json.loads(sock.recv())}


def listen(args: argparse.Namespace) -> Dict[str, Any]:
    sock = _socket(zmq.SUB, args.keys)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    monitor = sock.get_monitor_socket(curve.MONITORED)
    sock.connect(args.address)
    out: Dict[str, Any] = {"welcome": False, "events": [], "handshake": None}
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        why = _wait(sock, monitor, max(0.0, deadline - time.monotonic()))
        if why and why.startswith("handshake"):
            out["handshake"] = why
            continue
        if why:
            break
        frames = sock.recv_multipart()
        if frames[0] == b"hpilot-welcome":
            out["welcome"] = True
            print(json.dumps({"subscribed": True}), flush=True)  # the test may go on now
            continue
        if len(frames) != 2:  # QCG-PilotJob's single-frame events: counted, not read
            out["other_frames"] = out.get("other_frames", 0) + 1
            continue
        ev = json.loads(frames[1])
        out["events"].append(ev)
        if args.until_job and ev.get("job") == args.until_job and ev.get("state") in ("SUCCEED", "FAILED"):
            break
    return out


def register(args: argparse.Namespace) -> Dict[str, Any]:
    sock = _socket(zmq.DEALER, args.keys)
    sock.setsockopt(zmq.IDENTITY, os.urandom(16))
    monitor = sock.get_monitor_socket(curve.MONITORED)
    sock.connect(args.address)
    with contextlib.suppress(zmq.Again):
        sock.send(wire.encode(wire.register(args.id, "probe", os.getpid(), (("n1", 1),), ())), zmq.NOBLOCK)
    why = _wait(sock, monitor, args.seconds)
    if why:
        return {"error": why}
    msg = wire.decode(sock.recv())
    if isinstance(msg, wire.Registered):
        sock.send(wire.encode(wire.Bye("probe done")))
    return {"answer": type(msg).__name__, "why": getattr(msg, "reason", None)}


# ---- replay: a recording relay between a genuine partition and the governor ----


class Relay:
    """A TCP relay on ``host``: one connection, forwarded to ``target``; keeps the client's bytes."""

    def __init__(self, host: str, target: str) -> None:
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        h, p = target.rsplit(":", 1)
        self.target = (h.replace("tcp://", ""), int(p))
        self.sent = bytearray()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.target)
        for a, b, keep in ((client, server, True), (server, client, False)):
            threading.Thread(target=self._pump, args=(a, b, keep), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, keep: bool) -> None:
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if keep:
                    self.sent += data
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _send_raw(target: str, data: bytes, seconds: float) -> Dict[str, Any]:
    """Send ``data`` on a new TCP connection; read until the peer closes it (or time runs out)."""
    h, p = target.replace("tcp://", "").rsplit(":", 1)
    conn = socket.create_connection((h, int(p)))
    conn.settimeout(0.2)
    got = bytearray()
    closed = False
    with contextlib.suppress(OSError):
        conn.sendall(data)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        got += chunk
    conn.close()
    return {"closed_by_governor": closed, "bytes_back": len(got)}


def replay(args: argparse.Namespace) -> Dict[str, Any]:
    host = args.address.replace("tcp://", "").rsplit(":", 1)[0]
    relay = Relay(host, args.address)
    genuine = register(argparse.Namespace(address=f"tcp://{host}:{relay.port}", keys=args.keys, id=args.id,
                                          seconds=args.seconds))
    recorded = bytes(relay.sent)
    relay.stop.set()
    out: Dict[str, Any] = {"genuine": genuine, "recorded_bytes": len(recorded)}
    out["replayed"] = _send_raw(args.address, recorded, args.seconds)
    forged = bytearray(recorded)
    forged[-1] ^= 0x01  # one bit of the last message changed
    out["forged"] = _send_raw(args.address, bytes(forged), args.seconds)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=("ask", "listen", "register", "replay"))
    p.add_argument("address")
    p.add_argument("json", nargs="?", default="")
    p.add_argument("--keys", default=None)
    p.add_argument("--id", default="probe")
    p.add_argument("--until-job", default=None)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    result = {"ask": ask, "listen": listen, "register": register, "replay": replay}[args.command](args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
