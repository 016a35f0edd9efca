"""The local launcher shell with real (short) processes: exits, files, env, affinity, kills.

Every test runs twice: with the task's wd elsewhere (subprocess.Popen, wd created) and
with the task's wd being the service's cwd (the posix_spawn fast path).
"""

from __future__ import annotations

import ast
import functools
import os
import select
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import psutil
import pytest
from hpilot.launcher.api import LauncherEvent, TaskStarted
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.launcher.local import LocalLauncher

from tests.conftest import wait_for

pytestmark = pytest.mark.shell  # real processes: not in the core tier


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for a foreign parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Harness:
    def __init__(self, wd: Path, grace: float) -> None:
        self.wd = wd  # the tasks' default wd
        self.exits: Dict[str, TaskExit] = {}
        self.starts: Dict[str, Tuple[int, float]] = {}
        self.pids: List[int] = []  # every process a test started, also grandchildren it learnt of
        self.launcher = LocalLauncher(grace=grace)

    def _take(self, events: List[LauncherEvent]) -> int:
        n = 0
        for ev in events:
            if isinstance(ev, TaskExit):
                assert ev.task_id not in self.exits, f"{ev.task_id} reported twice"
                self.exits[ev.task_id] = ev
                n += 1
            elif isinstance(ev, TaskStarted):
                self.starts[ev.task_id] = (ev.pid, ev.now)
                self.pids.append(ev.pid)
        return n

    def launch(self, task_id: str, argv: Sequence[str], wd: Optional[Path] = None,
               env: Optional[Dict[str, str]] = None, **kw: Any) -> None:
        req = LaunchRequest(task_id=task_id, argv=tuple(argv), env=env, wd=str(wd or self.wd), **kw)
        self.launcher.launch(req)
        self.launcher.start_queued()  # as the launcher's next poll would, without collecting exits
        self._take(self.launcher.take_events())

    def pump(self) -> int:
        """Start what was launched, collect what has exited, let wall times act; returns how
        many exits were collected."""
        return self._take(self.launcher.poll())

    def wait_exit(self, task_id: str, timeout: float = 10.0) -> TaskExit:
        def done() -> bool:
            self.pump()
            return task_id in self.exits

        wait_for(done, timeout, f"exit of {task_id}")
        return self.exits[task_id]


SPAWNS: List[int] = []  # pids started by os.posix_spawn in the current test


@pytest.fixture(params=["popen", "posix_spawn"])
def mode(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    real = os.posix_spawn

    def counting(*args: Any, **kw: Any) -> int:
        pid = real(*args, **kw)
        SPAWNS.append(pid)
        return pid

    SPAWNS.clear()
    monkeypatch.setattr(os, "posix_spawn", counting)
    if request.param == "posix_spawn":
        monkeypatch.chdir(tmp_path)
    yield request.param
    SPAWNS.clear()


@pytest.fixture
def make(tmp_path: Path, mode: str) -> Iterator[Callable[..., Harness]]:
    made: List[Harness] = []
    wd = Path(os.getcwd()) if mode == "posix_spawn" else tmp_path / "wd"

    def factory(grace: float = 0.2) -> Harness:
        h = Harness(wd, grace)
        made.append(h)
        return h

    yield factory
    for h in made:
        h.launcher.close()
    for h in made:
        for pid in h.pids:
            wait_for(functools.partial(gone, pid), 5.0, f"process {pid} to be gone")


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


def read_pid(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip() != "", 10.0, f"{path}")
    return int(path.read_text().strip())


# ---- exit codes ----


def test_the_fast_path_is_taken_only_in_the_services_wd(h: Harness, mode: str, tmp_path: Path) -> None:
    h.launch("a", ["/bin/true"])
    h.launch("b", ["/bin/true"], wd=tmp_path / "elsewhere")
    a, b = h.wait_exit("a"), h.wait_exit("b")
    assert (a.exit_code, b.exit_code) == (0, 0)
    assert b.pid not in SPAWNS
    assert (a.pid in SPAWNS) == (mode == "posix_spawn")


def test_true_and_false(h: Harness) -> None:
    before = time.time()
    h.launch("ok", ["/bin/true"])
    h.launch("bad", ["/bin/false"])
    assert h.launcher.running == 2
    ok = h.wait_exit("ok")
    bad = h.wait_exit("bad")
    assert (ok.exit_code, ok.reason, ok.ok) == (0, None, True)
    assert (bad.exit_code, bad.reason, bad.ok) == (1, None, False)
    assert ok.pid == h.starts["ok"][0]
    assert before <= ok.started <= ok.finished <= time.time()
    assert h.launcher.running == 0


def test_exit_code_passed_through(h: Harness) -> None:
    h.launch("x", ["/bin/sh", "-c", "exit 42"])
    assert h.wait_exit("x").exit_code == 42


def test_many_tasks_each_reported_once(h: Harness) -> None:
    for i in range(20):
        h.launch(f"t{i}", ["/bin/sh", "-c", f"exit {i % 3}"])
    def all_done() -> bool:
        h.pump()
        return len(h.exits) == 20

    wait_for(all_done, 15.0, "20 exits")
    assert {k: v.exit_code for k, v in h.exits.items()} == {f"t{i}": i % 3 for i in range(20)}


def test_fileno_becomes_readable_on_exit(h: Harness) -> None:
    assert not h.launcher.needs_polling
    h.launch("t", ["/bin/true"])
    r, _, _ = select.select([h.launcher.fileno()], [], [], 10.0)
    assert r, "the launcher's descriptor did not wake up on a child's exit"
    wait_for(lambda: h.pump() > 0 or "t" in h.exits, 5.0, "reap")
    assert h.exits["t"].exit_code == 0


def test_missing_program(h: Harness) -> None:
    h.launch("m", ["/nonexistent/program", "x"])
    ex = h.exits["m"]  # reported at once: nothing was started
    assert ex.exit_code == 127
    assert ex.reason is not None and ex.reason.startswith("could not start")
    assert "/nonexistent/program" in ex.reason
    assert h.launcher.running == 0
    assert "m" not in h.starts


def test_not_executable_program(h: Harness, tmp_path: Path) -> None:
    prog = tmp_path / "prog.sh"
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(stat.S_IRUSR | stat.S_IWUSR)
    if os.access(prog, os.X_OK):
        pytest.skip("running as a user who may execute anything")
    h.launch("p", [str(prog)])
    ex = h.exits["p"]
    assert ex.exit_code == 126
    assert ex.reason is not None and ex.reason.startswith("could not start")


def test_missing_stdin_file(h: Harness, tmp_path: Path) -> None:
    h.launch("s", ["/bin/cat"], stdin=str(tmp_path / "no-such-input"))
    ex = h.exits["s"]
    assert ex.exit_code == 127
    assert ex.reason is not None and "could not start" in ex.reason and "no-such-input" in ex.reason


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_that_cannot_be_opened_is_named_in_the_reason(h: Harness, tmp_path: Path, stream: str) -> None:
    """Both spawn paths name the file, not the program (posix_spawn's own error names the program)."""
    (tmp_path / "adir").mkdir()
    for name, path in (("o", tmp_path / "no-such-dir" / "out.txt"), ("d", tmp_path / "adir")):
        h.launch(name, ["/bin/echo", "x"], **{stream: str(path)})
        ex = h.wait_exit(name)
        assert ex.exit_code == 127
        assert ex.reason is not None and ex.reason.startswith("could not start")
        assert str(path) in ex.reason and "/bin/echo" not in ex.reason, ex.reason


def test_wd_that_cannot_be_created(h: Harness, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    h.launch("w", ["/bin/true"], wd=tmp_path / "file" / "sub")
    ex = h.exits["w"]
    assert ex.exit_code == 127
    assert ex.reason is not None and ex.reason.startswith("could not start")


# ---- files, wd, env ----


def test_stdin_stdout_stderr_files(h: Harness, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("hello in\n")
    h.launch("io", ["/bin/sh", "-c", "cat; echo to-err >&2"], stdin=str(tmp_path / "in.txt"),
             stdout=str(tmp_path / "out.txt"), stderr=str(tmp_path / "err.txt"))
    assert h.wait_exit("io").exit_code == 0
    assert (tmp_path / "out.txt").read_text() == "hello in\n"
    assert (tmp_path / "err.txt").read_text() == "to-err\n"


def test_stdout_and_stderr_same_file(h: Harness, tmp_path: Path) -> None:
    out = str(tmp_path / "both.txt")
    h.launch("io", ["/bin/sh", "-c", "echo one; echo two >&2; echo three"], stdout=out, stderr=out)
    assert h.wait_exit("io").exit_code == 0
    assert (tmp_path / "both.txt").read_text() == "one\ntwo\nthree\n"


def test_no_files_means_devnull(h: Harness) -> None:
    h.launch("n", ["/bin/sh", "-c", "cat; echo x; echo y >&2"])  # cat reads EOF from /dev/null
    assert h.wait_exit("n").exit_code == 0


def test_wd_is_created(h: Harness, tmp_path: Path) -> None:
    wd = tmp_path / "a" / "b" / "c"
    h.launch("w", ["/bin/sh", "-c", "pwd -P > here.txt"], wd=wd)
    assert h.wait_exit("w").exit_code == 0
    assert wd.is_dir()
    assert (wd / "here.txt").read_text().strip() == str(wd.resolve())


def test_env_is_the_complete_environment(h: Harness, tmp_path: Path) -> None:
    h.launch("e", ["/usr/bin/env"], env={"FOO": "bar baz", "QCG_PM_NPROCS": "3"},
             stdout=str(tmp_path / "env.txt"))
    assert h.wait_exit("e").exit_code == 0
    lines = sorted((tmp_path / "env.txt").read_text().splitlines())
    # and nothing else but the guard's token (launcher/guard.py: how it finds its tasks)
    assert [ln for ln in lines if not ln.startswith("HPILOT_GUARD=")] == ["FOO=bar baz", "QCG_PM_NPROCS=3"]
    assert len(lines) == 3


def test_program_found_in_the_tasks_own_path(h: Harness, tmp_path: Path) -> None:
    bindir = tmp_path / "taskbin"
    bindir.mkdir()
    prog = bindir / "hpilot-test-prog"
    prog.write_text("#!/bin/sh\necho found \"$@\"\n")
    prog.chmod(0o755)
    h.launch("p", ["hpilot-test-prog", "x y"], env={"PATH": f"{bindir}:/usr/bin:/bin"},
             stdout=str(tmp_path / "p.txt"))
    assert h.wait_exit("p").exit_code == 0
    assert (tmp_path / "p.txt").read_text() == "found x y\n"


def test_program_missing_from_the_tasks_path(h: Harness, tmp_path: Path) -> None:
    empty = tmp_path / "emptybin"
    empty.mkdir()
    h.launch("p", ["true"], env={"PATH": str(empty)})
    ex = h.exits["p"]
    assert ex.exit_code == 127
    assert ex.reason is not None and ex.reason.startswith("could not start")


def test_env_none_inherits(h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPILOT_TEST_INHERITED", "yes")
    h.launch("e", ["/usr/bin/env"], stdout=str(tmp_path / "env.txt"))
    assert h.wait_exit("e").exit_code == 0
    assert "HPILOT_TEST_INHERITED=yes" in (tmp_path / "env.txt").read_text().splitlines()


def test_inheritable_descriptors_of_the_service_are_not_passed_on(h: Harness, tmp_path: Path) -> None:
    """Like Popen's close_fds=True: a task must not hold, e.g., a pipe the service inherited."""
    r, w = os.pipe()
    try:
        os.set_inheritable(w, True)
        probe = "import os, sys\ntry:\n os.fstat(int(sys.argv[1])); print('open')\nexcept OSError: print('closed')"
        h.launch("fd", [sys.executable, "-c", probe, str(w)], stdout=str(tmp_path / "fd.txt"))
        assert h.wait_exit("fd").exit_code == 0
        assert (tmp_path / "fd.txt").read_text().strip() == "closed"
    finally:
        os.close(r)
        os.close(w)


def test_tasks_get_default_signal_dispositions(h: Harness, tmp_path: Path) -> None:
    """Python ignores SIGPIPE; a task must not inherit that (Popen's restore_signals)."""
    h.launch("pipe", ["/bin/bash", "-c", 'yes | head -n1 >/dev/null; echo "${PIPESTATUS[0]}"'],
             stdout=str(tmp_path / "pipe.txt"), stderr=str(tmp_path / "pipe.err"))
    assert h.wait_exit("pipe").exit_code == 0
    assert (tmp_path / "pipe.txt").read_text().strip() == str(128 + signal.SIGPIPE), (
        "`yes` was not killed by SIGPIPE: " + (tmp_path / "pipe.err").read_text())


# ---- CPU affinity ----

AFFINITY = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]


def test_cpu_affinity_applied(h: Harness, tmp_path: Path) -> None:
    mine = os.sched_getaffinity(0)
    cpu = max(mine)
    h.launch("a", AFFINITY, cpus=(cpu,), stdout=str(tmp_path / "aff.txt"))
    h.launch("g", ["/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"], cpus=(cpu,),
             stdout=str(tmp_path / "grep.txt"))
    assert os.sched_getaffinity(0) == mine, "the launcher's own CPU mask was not restored"
    assert h.wait_exit("a").exit_code == 0
    assert h.wait_exit("g").exit_code == 0
    assert (tmp_path / "aff.txt").read_text().strip() == str([cpu])
    assert (tmp_path / "grep.txt").read_text().split() == ["Cpus_allowed_list:", str(cpu)]


def test_no_cpus_no_binding(h: Harness, tmp_path: Path) -> None:
    h.launch("a", AFFINITY, stdout=str(tmp_path / "aff.txt"))
    assert h.wait_exit("a").exit_code == 0
    assert (tmp_path / "aff.txt").read_text().strip() == str(sorted(os.sched_getaffinity(0)))


def test_unusable_cpus_still_start_the_task(h: Harness, tmp_path: Path) -> None:
    h.launch("a", AFFINITY, cpus=(100000,), stdout=str(tmp_path / "aff.txt"))
    assert h.wait_exit("a").exit_code == 0
    assert os.sched_getaffinity(0) == set(ast.literal_eval((tmp_path / "aff.txt").read_text()))


# ---- wall time and kills ----


def test_wall_time_kills_sleep(make: Callable[..., Harness]) -> None:
    h = make(grace=0.2)
    h.launch("w", ["sleep", "30"], walltime=0.3)
    assert h.launcher.next_deadline() is not None
    ex = h.wait_exit("w", timeout=10.0)  # the sleep would take 30 s
    assert ex.exit_code == 128 + signal.SIGTERM
    assert ex.reason == "wall time of 0.3s exceeded"
    assert not ex.ok
    assert ex.finished - ex.started >= 0.3  # not before its wall time


def test_wall_time_sigkill_after_grace_when_term_is_ignored(make: Callable[..., Harness], tmp_path: Path) -> None:
    h = make(grace=0.2)
    h.launch("w", ["/bin/bash", "-c", "trap '' TERM; sleep 30 & echo $! > child.pid; wait"], walltime=0.3)
    child = read_pid(h.wd / "child.pid")
    h.pids.append(child)
    ex = h.wait_exit("w", timeout=10.0)
    assert ex.exit_code == 128 + signal.SIGKILL
    assert ex.reason == "wall time of 0.3s exceeded"
    wait_for(lambda: gone(child), 5.0, "the script's child to be killed too")


def test_kill_reaches_the_scripts_children(h: Harness, tmp_path: Path) -> None:
    h.launch("k", ["/bin/bash", "-c", "sleep 30 & echo $! > child.pid; wait"])
    child = read_pid(h.wd / "child.pid")
    h.pids.append(child)
    assert not gone(child)
    h.launcher.kill("k", "canceled by the user")
    ex = h.wait_exit("k", timeout=10.0)
    assert ex.reason == "canceled by the user"
    assert ex.exit_code == 128 + signal.SIGTERM
    wait_for(lambda: gone(child), 5.0, "the script's child to be killed too")


def test_kill_all(h: Harness) -> None:
    h.launch("a", ["sleep", "30"])
    h.launch("b", ["sleep", "30"])
    h.launcher.kill_all("shutdown")
    h.wait_exit("a")
    h.wait_exit("b")
    assert h.exits["a"].reason == h.exits["b"].reason == "shutdown"


@pytest.mark.parametrize("how", ["kill", "kill_all"])
def test_a_task_that_ended_before_the_kill_ended_by_itself(h: Harness, how: str) -> None:
    """It exited 0 before the kill came, but the launcher had not collected it yet: it
    succeeded.  (Reported killed, a stop of the run would have it run again on resume.)"""
    h.launch("done", ["true"])
    pid = h.starts["done"][0]
    wait_for(lambda: gone(pid), 10.0, "the task to exit")  # a zombie: exited, not collected
    if how == "kill":
        h.launcher.kill("done", "interrupted by SIGTERM")
    else:
        h.launcher.kill_all("interrupted by SIGTERM")
    ex = h.wait_exit("done")
    assert (ex.exit_code, ex.reason, ex.ok) == (0, None, True)


def test_kill_now(h: Harness) -> None:
    h.launch("a", ["/bin/bash", "-c", "trap '' TERM; sleep 30"])
    h.launcher.kill_now()
    ex = h.wait_exit("a")
    assert ex.exit_code == 128 + signal.SIGKILL


def test_close_kills_everything(h: Harness, tmp_path: Path) -> None:
    """The tasks would run for hours: close() returning at all (within the test's timeout) killed them."""
    h.launch("a", ["sleep", "30000"])
    h.launch("b", ["/bin/bash", "-c", "trap '' TERM; sleep 30000"])
    h.launch("c", ["/bin/bash", "-c", "sleep 30000 & echo $! > child.pid; wait"])
    child = read_pid(h.wd / "child.pid")
    h.pids.append(child)
    pids = [pid for pid, _ in h.starts.values()]
    assert len(pids) == 3
    h.launcher.close()
    for pid in pids:
        assert gone(pid), f"task process {pid} survived close()"
    wait_for(lambda: gone(child), 5.0, "the script's child to be killed by close()")
