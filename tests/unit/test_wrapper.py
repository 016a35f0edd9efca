"""The C wrapper (wrapper_c/) and the launcher side of it (launcher/rtstats.py).

The wrapper is compiled from the source in this checkout (not a stale installed
one) with the same flags ``pip install`` uses, and once more with -Werror -pedantic
to keep it warning-free.  Every test runs it for real.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hpilot.launcher import rtstats
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.launcher.local import LocalLauncher
from hpilot.launcher.rtstats import RtStats, WrapperError, build_wrapper, find_wrapper

from tests.conftest import wait_for

pytestmark = pytest.mark.shell  # real processes: not in the core tier

SOURCE = Path(__file__).resolve().parents[2] / "wrapper_c" / "hpilot_wrapper.c"
KEYS = {"v", "task", "host", "wpid", "pid", "start", "stop", "start_mono", "stop_mono", "exit", "signal",
        "utime", "stime", "maxrss_kb", "cpus", "error"}
needs_cc = pytest.mark.skipif(rtstats.compiler() is None, reason="no C compiler to build the wrapper")


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory: pytest.TempPathFactory) -> str:
    if rtstats.compiler() is None:
        pytest.skip("no C compiler to build the wrapper")
    return build_wrapper(str(SOURCE), str(tmp_path_factory.mktemp("wrapper")))


def run_wrapped(wrapper: str, *args: str, task: str = "t:0", extra: tuple = ()) -> tuple:
    """Run the wrapper with its record on a pipe; returns (exit status, record dict, raw line)."""
    r, w = os.pipe()
    try:
        proc = subprocess.run([wrapper, "-r", str(w), "-t", task, *extra, "--", *args], pass_fds=(w,),
                              capture_output=True, text=True, timeout=30)
        os.close(w)
        w = -1
        raw = os.read(r, 65536)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    lines = raw.splitlines()
    assert len(lines) == 1, raw
    return proc.returncode, json.loads(lines[0]), raw


@needs_cc
def test_source_compiles_without_warnings(tmp_path: Path) -> None:
    cc = rtstats.compiler()
    assert cc is not None
    out = subprocess.run([*cc.split(), "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-o",
                          str(tmp_path / "w"), str(SOURCE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("code", [0, 1, 3, 42, 255])
def test_exit_status_is_the_tasks(wrapper: str, code: int) -> None:
    rc, rec, _ = run_wrapped(wrapper, "/bin/sh", "-c", f"exit {code}")
    assert rc == code
    assert rec["exit"] == code and rec["signal"] == 0 and rec["error"] == ""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_killed_task_exits_128_plus_signal(wrapper: str, sig: int) -> None:
    rc, rec, _ = run_wrapped(wrapper, "/bin/sh", "-c", f"kill -{int(sig)} $$")
    assert rc == 128 + sig
    assert rec["signal"] == sig and rec["exit"] == 128 + sig


def test_record_format(wrapper: str) -> None:
    before = time.time()
    rc, rec, raw = run_wrapped(wrapper, "/bin/sleep", "0.2", task='we"ird\\name:7')
    after = time.time()
    assert rc == 0
    assert set(rec) == KEYS
    assert rec["v"] == 1 and rec["task"] == 'we"ird\\name:7'
    assert raw.endswith(b"\n") and len(raw) < 4096  # one atomic write
    assert before <= rec["start"] <= rec["stop"] <= after
    assert rec["stop"] - rec["start"] >= 0.19 and rec["stop_mono"] - rec["start_mono"] >= 0.19  # the sleep 0.2
    assert abs((rec["stop"] - rec["start"]) - (rec["stop_mono"] - rec["start_mono"])) < 0.05
    assert rec["pid"] > 0 and rec["wpid"] > 0 and rec["pid"] != rec["wpid"]
    assert rec["maxrss_kb"] > 0 and rec["utime"] >= 0 and rec["stime"] >= 0
    assert len(str(rec["start"]).split(".")[1]) <= 6  # microseconds


def test_rusage_counts_the_tasks_cpu(wrapper: str) -> None:
    rc, rec, _ = run_wrapped(wrapper, "/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
    assert rc == 0
    assert rec["utime"] + rec["stime"] > 0.05


def test_missing_program_is_127_with_the_reason(wrapper: str) -> None:
    rc, rec, _ = run_wrapped(wrapper, "/no/such/program")
    assert rc == 127
    assert "No such file" in rec["error"] and rec["pid"] == 0


def test_affinity_is_set_for_the_task(wrapper: str) -> None:
    cpu = min(os.sched_getaffinity(0))
    r, w = os.pipe()
    out = subprocess.run([wrapper, "-r", str(w), "-c", str(cpu), "--", "/bin/sh", "-c",
                          "grep Cpus_allowed_list /proc/self/status"], pass_fds=(w,), capture_output=True,
                         text=True, timeout=30)
    os.close(w)
    rec = json.loads(os.read(r, 65536))
    os.close(r)
    assert out.returncode == 0
    assert out.stdout.split(":")[1].strip() == str(cpu)
    assert rec["cpus"] == str(cpu) and rec["error"] == ""


def test_bad_cpu_list_is_reported_and_the_task_still_runs(wrapper: str) -> None:
    rc, rec, _ = run_wrapped(wrapper, "/bin/true", extra=("-c", "3-1"))
    assert rc == 0 and rec["error"] == "bad cpu list"


def test_task_inherits_no_descriptor_but_0_1_2(wrapper: str) -> None:
    """Neither the record pipe nor anything else the launcher left inheritable."""
    r, w = os.pipe()
    other = os.open(os.devnull, os.O_RDONLY)
    try:
        out = subprocess.run([wrapper, "-r", str(w), "--", "/bin/sh", "-c", "ls /proc/self/fd"],
                             pass_fds=(w, other), capture_output=True, text=True, timeout=30)
    finally:
        os.close(w)
        os.close(other)
    os.read(r, 65536)
    os.close(r)
    assert out.returncode == 0
    # 0, 1, 2 and the descriptor ls opens for /proc/self/fd itself
    assert sorted(int(x) for x in out.stdout.split())[:3] == [0, 1, 2]
    assert str(w) not in out.stdout.split() and str(other) not in out.stdout.split()


def test_wrapper_survives_sigterm_to_the_group_and_reports(wrapper: str) -> None:
    r, w = os.pipe()
    proc = subprocess.Popen([wrapper, "-r", str(w), "-t", "g", "--", "/bin/sleep", "30"], pass_fds=(w,),
                            start_new_session=True)
    os.close(w)
    try:
        wait_for(lambda: len(_children(proc.pid)) == 1, what="the task to start")
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rec = json.loads(os.read(r, 65536))
    os.close(r)
    assert rec["signal"] == signal.SIGTERM and rec["task"] == "g"


def _children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def test_o_append_file_mode_keeps_every_record(wrapper: str, tmp_path: Path) -> None:
    out = tmp_path / "records.jsonl"
    procs = [subprocess.Popen([wrapper, "-f", str(out), "-t", f"f:{i}", "--", "/bin/true"]) for i in range(100)]
    for p in procs:
        assert p.wait(timeout=30) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["task"] for r in recs) == sorted(f"f:{i}" for i in range(100))


def test_no_record_lost_under_load(wrapper: str, tmp_path: Path) -> None:
    """1000 wrappers, up to 64 at once, all writing to the one pipe that RtStats holds open,
    while it is drained only now and then (so the pipe also fills up)."""
    rt = RtStats(wrapper, str(tmp_path), "load")
    running: List[subprocess.Popen] = []
    n = 1000
    try:
        for i in range(n):
            req = LaunchRequest(f"load:{i}", ("/bin/true",), None, str(tmp_path))
            running.append(subprocess.Popen(rt.argv(req, "/bin/true", rt.write_fd), pass_fds=(rt.write_fd,)))
            if len(running) >= 64:
                for p in running:
                    assert p.wait(timeout=30) == 0
                running.clear()
                if i % 256 < 64:
                    rt.drain()
        for p in running:
            assert p.wait(timeout=30) == 0
    finally:
        for p in running:
            if p.poll() is None:
                p.kill()
                p.wait()
        rt.close()
    recs = [json.loads(line) for line in Path(rt.records_path).read_text().splitlines()]
    assert len(recs) == n
    assert {r["task"] for r in recs} == {f"load:{i}" for i in range(n)}


def test_find_wrapper_explicit_path_errors(tmp_path: Path) -> None:
    with pytest.raises(WrapperError, match="no such file"):
        find_wrapper(str(tmp_path / "nope"))
    f = tmp_path / "notexec"
    f.write_text("")
    with pytest.raises(WrapperError, match="not executable"):
        find_wrapper(str(f))


def test_find_wrapper_builds_from_the_checkout_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if rtstats.compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(rtstats, "_HERE", str(tmp_path / "nowhere"))  # no installed binary
    # the checkout's source, also when the package under test was installed from it (CI)
    source = Path(__file__).resolve().parents[2] / "wrapper_c" / Path(rtstats._SOURCE).name
    monkeypatch.setattr(rtstats, "_SOURCE", str(source))
    exe = find_wrapper(None)
    assert exe.startswith(str(tmp_path)) and os.access(exe, os.X_OK)
    assert find_wrapper(None) == exe  # built once per source version


# ---- LocalLauncher with rt-stats ----


class Collect:
    def __init__(self) -> None:
        self.exits: Dict[str, TaskExit] = {}

    def __call__(self, ex: TaskExit) -> None:
        self.exits[ex.task_id] = ex


def drive(launcher: LocalLauncher, got: Any, done: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("tasks did not finish in time")
        fd = launcher.fileno()
        if fd >= 0:
            select.select([fd], [], [], 0.05)
        for ev in launcher.poll():
            if isinstance(ev, TaskExit):
                got(ev)


def read_jsonl(path: str) -> List[Dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("same_wd", [True, False], ids=["posix_spawn", "popen"])
def test_local_launcher_writes_both_records(wrapper: str, tmp_path: Path, same_wd: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    wd = str(tmp_path) if same_wd else str(tmp_path / "sub")
    rt = RtStats(wrapper, str(tmp_path / "rtstats"), "t")
    got = Collect()
    launcher = LocalLauncher(grace=0.5, rtstats=rt)
    cpu = min(os.sched_getaffinity(0))
    try:
        launcher.launch(LaunchRequest("ok", ("true",), None, wd, stdout=os.path.join(wd, "out")))
        launcher.launch(LaunchRequest("fail", ("/bin/sh", "-c", "exit 5"), None, wd))
        launcher.launch(LaunchRequest("sig", ("/bin/sh", "-c", "kill -KILL $$"), None, wd))
        launcher.launch(LaunchRequest("wt", ("/bin/sleep", "30"), None, wd, walltime=0.3))
        launcher.launch(LaunchRequest("bound", ("/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"),
                                      None, wd, stdout=os.path.join(wd, "aff"), cpus=(cpu,)))
        launcher.launch(LaunchRequest("missing", ("no-such-program-xyz",), None, wd))
        drive(launcher, got, lambda: len(got.exits) == 6)
    finally:
        launcher.close()
    ex = got.exits
    assert ex["ok"].exit_code == 0 and ex["ok"].reason is None
    assert ex["fail"].exit_code == 5 and ex["fail"].reason is None
    assert ex["sig"].exit_code == 137 and ex["sig"].reason == "killed by signal 9 (SIGKILL)"
    assert ex["wt"].reason == "wall time of 0.3s exceeded" and ex["wt"].exit_code == 128 + signal.SIGTERM
    assert ex["missing"].exit_code == 127 and "could not start" in (ex["missing"].reason or "")
    assert (Path(wd) / "aff").read_text().split(":")[1].strip() == str(cpu)
    wrapped = {r["task"]: r for r in read_jsonl(rt.records_path)}
    launched = {r["task"]: r for r in read_jsonl(rt.launch_path)}
    assert set(wrapped) == {"ok", "fail", "sig", "wt", "bound"}
    assert set(launched) == set(wrapped)  # 'missing' never started
    assert wrapped["bound"]["cpus"] == str(cpu) and launched["bound"]["cpus"] == str(cpu)
    assert launched["wt"]["reason"] == "wall time of 0.3s exceeded"
    for t, w in wrapped.items():
        lr = launched[t]
        assert lr["spawn_mono"] <= w["start_mono"] <= w["stop_mono"] <= lr["end_mono"], t
        assert w["wpid"] == lr["pid"]


def test_drain_finds_a_killed_task_among_many_records(tmp_path: Path) -> None:
    rt = RtStats("/bin/true", str(tmp_path), "d")
    try:
        lines = [{"v": 1, "task": f"a:{i}", "exit": 0, "signal": 0, "error": ""} for i in range(5)]
        lines.insert(2, {"v": 1, "task": "killed", "exit": 143, "signal": 15, "error": ""})
        lines.append({"v": 1, "task": "noexec", "exit": 127, "signal": 0, "error": "cannot execute x"})
        os.write(rt.write_fd, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines).encode())
        assert rt.drain() == 7
        assert rt.signal_of("killed") == 15 and rt.signal_of("a:0") is None
        assert rt.error_of("noexec") == "cannot execute x"
    finally:
        rt.close()
    assert len(Path(rt.records_path).read_text().splitlines()) == 7
