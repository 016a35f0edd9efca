"""Wire workloads (issue #13): CURVE off loopback against plain loopback, 100 clients for a
minute, and a flood of hostile frames and connections against one normal client.

Every measurement runs inside a private network namespace made for it (``unshare -n``
with a veth pair ``d0``/``d1``, ``10.211.0.1`` on ``d0``: an address that exists only
there, as in tests/netns.py), so that "off loopback" never touches an address of the
machine and the loopback of the namespace is the benchmark's alone.  Both sides of each
comparison run in the same namespace in the same run, alternating.

- ``N-W1-curve``: W1 (2000 x /bin/true) through ``LocalManager`` bound to ``d0``
  (CURVE), against the same with the service on loopback (plain), start to finish.
- ``N-100c-lo`` / ``N-100c-curve``: 100 client threads, each its own REQ socket, submit
  a job, ask its status and list the jobs (or the resources) for a minute; every request
  must be answered and every submitted job must exist and succeed.
- ``N-flood-lo``: a normal client's ``status`` requests while 4 processes send hostile
  frames (JSON nested 1,000 deep, 5,000-digit numbers, bad UTF-8, NaN, broken
  envelopes) to the plain loopback socket as fast as they can.
- ``N-flood-curve``: the same client, over CURVE, while 4 processes open connections
  with keys the service does not know, as fast as they can.

The flooding processes run at ``nice 19``: they stand for other hosts, and on this
machine's 2 CPUs they would otherwise measure the kernel's scheduler rather than the
service; they still send all they can (the rows say how much).

``python -m bench.wire`` prints the rows; ``python -m bench API wire`` puts them in the
main table (``python -m bench all`` does, and bench/targets.py checks them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

IFACE, ADDRESS = "d0", "10.211.0.1"
SETUP = (f"ip link set lo up && ip link add {IFACE} type veth peer name d1 && ip addr add {ADDRESS}/24 dev {IFACE} "
         f"&& ip link set {IFACE} up && ip link set d1 up")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOOD_PROCS = 4
LATENCY_SAMPLES = 300


def _row(name: str, desc: str, wall: float, tasks: int = 0, **extra: Any) -> Dict[str, Any]:
    row = {"workload": name, "description": desc, "tasks": tasks, "wall_s": round(wall, 4),
           "tasks_per_s": round(tasks / wall, 1) if tasks else None, "peak_mb": 0.0, "makespan_s": None,
           "exit_codes": [0], "runs": []}
    row.update(extra)
    return row


def run(repeat: int, workdir: str, file_w1_wall: float, quick: bool = False) -> List[Dict[str, Any]]:
    """The rows, measured by a child process inside a fresh network namespace."""
    out = os.path.join(workdir, "wire.json")
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    inner = [sys.executable, "-m", "bench.wire", "--inner", "--repeat", str(repeat), "--workdir",
             os.path.join(workdir, "wire"), "--json", out] + (["--quick"] if quick else [])
    cmd = [*unshare, "sh", "-c", SETUP + " && exec " + " ".join(_quote(a) for a in inner)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"the wire benchmark could not run in a network namespace: "
                           f"{(done.stderr or done.stdout).strip()[-400:]}")
    with open(out) as f:
        rows: List[Dict[str, Any]] = json.load(f)
    return rows


def _quote(a: str) -> str:
    import shlex

    return shlex.quote(a)


# ---- inside the namespace ----


def measure(repeat: int, workdir: str, quick: bool) -> List[Dict[str, Any]]:
    os.makedirs(workdir, exist_ok=True)
    rows = [w1_curve_vs_plain(repeat, workdir)]
    seconds = 10.0 if quick else 60.0
    for iface in ("127.0.0.1", IFACE):
        rows.append(hundred_clients(workdir, iface, seconds))
    rows.append(flood(workdir, "127.0.0.1", "frames", 5.0 if quick else 20.0))
    rows.append(flood(workdir, IFACE, "strangers", 5.0 if quick else 20.0))
    return rows


def w1_curve_vs_plain(repeat: int, workdir: str) -> Dict[str, Any]:
    from hpilot.governor import LocalManager

    from bench.workloads import w1

    job = w1()[0]["jobs"][0]
    walls: Dict[str, List[float]] = {"127.0.0.1": [], IFACE: []}
    curved = False
    for r in range(repeat):
        for iface in (("127.0.0.1", IFACE) if r % 2 == 0 else (IFACE, "127.0.0.1")):
            wd = os.path.join(workdir, f"w1-{iface}")
            t0 = time.perf_counter()
            m = LocalManager(["--nodes", "2", "--wd", wd, "--log", "warning", "--net-iface", iface])
            try:
                curved = curved or (iface == IFACE and m.keys is not None)
                m.submit([{**job, "name": f"w1-{r}"}])
                states = m.wait4(f"w1-{r}")
            finally:
                m.finish()
            walls[iface].append(time.perf_counter() - t0)
            assert states == {f"w1-{r}": "SUCCEED"}, states
    plain, curve = statistics.median(walls["127.0.0.1"]), statistics.median(walls[IFACE])
    return _row("N-W1-curve", "W1 through LocalManager on d0 (CURVE) vs on loopback (plain), same namespace",
                curve, tasks=2000, plain_s=round(plain, 4), curve_vs_plain=round(curve / plain, 3),
                curve_on=curved, runs=[round(w, 4) for w in walls[IFACE]],
                plain_runs=[round(w, 4) for w in walls["127.0.0.1"]])


# ---- a service and its clients ----


class Service:
    """``hpilot service --net`` on ``iface``; the address, and the key file off loopback."""

    def __init__(self, workdir: str, name: str, iface: str, nodes: str = "4") -> None:
        self.wd = os.path.join(workdir, name)
        os.makedirs(self.wd, exist_ok=True)
        self.out = open(os.path.join(workdir, f"{name}.out"), "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "hpilot.governor", "service", "--net", "--nodes", nodes,
                                      "--net-iface", iface, "--wd", self.wd, "--log", "warning"],
                                     cwd=self.wd, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        path = os.path.join(self.wd, ".hpilot", "latest", "address")
        while not _complete(path):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the service on {iface} did not start")
            time.sleep(0.02)
        with open(path) as f:
            info = json.load(f)
        self.address: str = info["address"]
        self.server_key: str = info.get("server_key") or "-"
        run = os.path.realpath(os.path.dirname(path))
        self.keys: Optional[str] = os.path.join(run, "client.key") if info.get("server_key") else None

    def socket(self, kind: int) -> Any:
        import zmq
        from hpilot.launcher import curve

        sock = zmq.Context.instance().socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if self.keys:
            curve.connect_with(sock, curve.read_peer_keys(self.keys))
        sock.connect(self.address)
        return sock

    def ask(self, payload: Dict[str, Any], timeout: float = 60.0) -> Dict[str, Any]:
        sock = self.socket(__import__("zmq").REQ)
        try:
            sock.send_json(payload)
            if not sock.poll(int(timeout * 1000)):
                raise RuntimeError(f"no answer to {payload['request']} in {timeout:g} s")
            answer: Dict[str, Any] = sock.recv_json()
            return answer
        finally:
            sock.close(0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask({"request": "finish"}, 10)
                self.proc.wait(30)
            except (RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def _complete(path: str) -> bool:
    try:
        with open(path) as f:
            return f.read().endswith("}")
    except OSError:
        return False


def hundred_clients(workdir: str, iface: str, seconds: float, n: int = 100) -> Dict[str, Any]:
    import zmq

    svc = Service(workdir, f"c100-{iface}", iface)
    sent, answered, errors, submitted, latencies = [0] * n, [0] * n, [0] * n, [[] for _ in range(n)], []
    lock = threading.Lock()
    barrier = threading.Barrier(n, timeout=60)
    stop_at: List[float] = []

    def client(idx: int) -> None:
        sock = svc.socket(zmq.REQ)
        mine: List[float] = []
        try:
            barrier.wait()
            i = 0
            while time.monotonic() < stop_at[0]:
                name = f"c{idx:03d}-{i:05d}"
                for req in ({"request": "submit", "jobs": [{"name": name, "execution": {"exec": "/bin/true"}}]},
                            {"request": "jobStatus", "jobNames": [name]},
                            {"request": "listJobs"} if i % 4 == 0 else {"request": "resourcesInfo"}):
                    t0 = time.perf_counter()
                    sock.send_json(req)
                    sent[idx] += 1
                    if not sock.poll(60_000):
                        errors[idx] += 1
                        return  # a REQ socket without its answer cannot go on
                    answer = sock.recv_json()
                    mine.append(time.perf_counter() - t0)
                    answered[idx] += 1
                    if not isinstance(answer, dict) or answer.get("code") != 0:
                        errors[idx] += 1
                    elif req["request"] == "submit":
                        submitted[idx].append(name)
                i += 1
        finally:
            sock.close(0)
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    stop_at.append(time.monotonic() + seconds + 5)  # the barrier's wait is within the 5 s
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    names = {name for mine in submitted for name in mine}
    try:
        deadline = time.monotonic() + 300
        while True:
            jobs = svc.ask({"request": "listJobs"}, 120)["data"]["jobs"]
            if all(e["status"] in ("SUCCEED", "FAILED", "CANCELED", "OMITTED") for e in jobs.values()) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        svc.stop()
    missing = len(names - set(jobs))
    not_ok = sum(1 for name in names if jobs.get(name, {}).get("status") != "SUCCEED")
    lost = (sum(sent) - sum(answered)) + sum(errors) + missing + not_ok
    latencies.sort()
    kind = "CURVE on d0" if iface == IFACE else "plain loopback"
    return _row(f"N-100c-{'curve' if iface == IFACE else 'lo'}",
                f"100 clients for {seconds:.0f} s, {kind}: submit, jobStatus, listJobs/resourcesInfo", wall,
                requests=sum(sent), answered=sum(answered), jobs=len(names), lost=lost,
                median_ms=round(1000 * statistics.median(latencies), 2) if latencies else None,
                p99_ms=round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None)


def flood(workdir: str, iface: str, kind: str, seconds: float) -> Dict[str, Any]:
    """A normal client's latency without, then with, a flood of hostile frames or connections."""
    svc = Service(workdir, f"flood-{kind}", iface, nodes="2")
    try:
        quiet = _latencies(svc, LATENCY_SAMPLES // 3)
        # nice 19: the flooders stand for other hosts; on this machine's 2 CPUs they would otherwise
        # measure the kernel's scheduler, not the service (they still send all they can)
        flooders = [subprocess.Popen(["nice", "-n", "19", sys.executable, "-m", "bench.wire", "--flood", kind,
                                      "--address", svc.address,
                                      "--server-key", svc.server_key, "--seconds", str(seconds + 30)],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
                    for _ in range(FLOOD_PROCS)]
        try:
            time.sleep(1.0)  # the flood is under way before the first sample
            t0 = time.monotonic()
            loud = _latencies(svc, LATENCY_SAMPLES, until=t0 + seconds)
        finally:
            for p in flooders:
                p.send_signal(signal.SIGINT)  # it prints how many it sent
            sent, unheard = 0, 0
            for p in flooders:
                try:
                    out, _ = p.communicate(timeout=30)
                except subprocess.TimeoutExpired:  # at nice 19 on a busy machine: its count is lost, not the row
                    p.kill()
                    out, _ = p.communicate()
                    unheard += 1
                    continue
                sent += int((out or "0").strip().splitlines()[-1] if out and out.strip() else 0)
        alive = svc.proc.poll() is None and svc.ask({"request": "status"}, 10)["code"] == 0
    finally:
        svc.stop()
    loud.sort()
    desc = ("hostile frames to the plain loopback socket" if kind == "frames"
            else "connections with unknown keys to the CURVE socket on d0")
    return _row(f"N-flood-{'lo' if kind == 'frames' else 'curve'}",
                f"a client's status requests while {FLOOD_PROCS} processes send {desc}", seconds,
                hostile_sent=sent, flooders_unheard=unheard, samples=len(loud), service_alive=alive,
                quiet_median_ms=round(1000 * statistics.median(quiet), 2),
                median_ms=round(1000 * statistics.median(loud), 2),
                p99_ms=round(1000 * loud[min(len(loud) - 1, int(len(loud) * 0.99))], 2),
                max_ms=round(1000 * loud[-1], 2))


def _latencies(svc: Service, samples: int, until: Optional[float] = None) -> List[float]:
    import zmq

    sock = svc.socket(zmq.REQ)
    out: List[float] = []
    try:
        for _ in range(samples):
            if until is not None and time.monotonic() > until:
                break
            t0 = time.perf_counter()
            sock.send_json({"request": "status"})
            if not sock.poll(10_000):
                out.append(10.0)
                break
            sock.recv()
            out.append(time.perf_counter() - t0)
            time.sleep(0.01)  # a normal client, not a second flood
    finally:
        sock.close(0)
    return out


# ---- a flooding process ----

HOSTILE = [b"[" * 1000 + b"]" * 1000, b'{"request": "submit", "jobs": ' + b"9" * 5000 + b"}", b"\xff\xfe" * 64,
           b"[NaN]", b'{"request": ' * 200, b"x" * 65536]


def flood_main(kind: str, address: str, server_key: str, seconds: float) -> int:
    """Send hostile frames (or open hostile connections) until killed; print how many."""
    import zmq
    from hpilot.launcher import curve

    ctx = zmq.Context.instance()
    sent = 0
    stop = time.monotonic() + seconds
    try:
        if kind == "frames":
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 1000)
            sock.connect(address)
            while time.monotonic() < stop:
                for frame in HOSTILE:
                    try:
                        sock.send_multipart([b"", frame], zmq.NOBLOCK)
                        sent += 1
                    except zmq.Again:
                        break
                while sock.poll(0):
                    sock.recv_multipart()  # the error answers: keep the pipe flowing
        else:
            # the service's public key (it is public: in the address file), so strangers get as far as ZAP
            server = server_key.encode() if len(server_key) == 40 else curve.new_pair().public
            while time.monotonic() < stop:
                pair = curve.new_pair()
                sock = ctx.socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                curve.connect_with(sock, curve.PeerKeys(server, pair.public, pair.secret))
                monitor = sock.get_monitor_socket(curve.MONITORED)
                sock.connect(address)
                monitor.poll(2000)  # until the service refuses it
                sent += 1
                sock.disable_monitor()
                monitor.close(0)
                sock.close(0)
    except KeyboardInterrupt:
        pass
    finally:
        print(sent, flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.wire", description=__doc__.splitlines()[0])
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--flood", choices=("frames", "strangers"), help=argparse.SUPPRESS)
    ap.add_argument("--address", default="")
    ap.add_argument("--server-key", default="-")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.flood:
        return flood_main(args.flood, args.address, args.server_key, args.seconds)
    if args.inner:
        assert args.workdir and args.json
        rows = measure(args.repeat, args.workdir, args.quick)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
        return 0
    import tempfile

    from bench.__main__ import render

    with tempfile.TemporaryDirectory(prefix="hpilot-bench-wire-") as workdir:
        rows = run(args.repeat, workdir, 0.0, args.quick)
    print(render(rows))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

