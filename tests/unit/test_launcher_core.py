"""The launcher's pure core: spawn, wall time (SIGTERM, then SIGKILL after grace), kill, reports."""

from __future__ import annotations

import re
import signal
from typing import Any, Optional, cast

import pytest
from hpilot.launcher.core import (
    Exited,
    Kill,
    Launch,
    LauncherCore,
    LaunchRequest,
    Paused,
    Report,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    TaskExit,
    Tick,
)


def req(task_id: str = "t", walltime: Optional[float] = None) -> LaunchRequest:
    return LaunchRequest(task_id=task_id, argv=("/bin/true",), env=None, wd="/tmp", walltime=walltime)


def started(core: LauncherCore, task_id: str = "t", walltime: Optional[float] = None,
            now: float = 100.0, pid: int = 4242) -> None:
    assert core.handle(Launch(req(task_id, walltime))) == [Spawn(req(task_id, walltime))]
    assert core.handle(Spawned(task_id, pid, now)) == []


def only_report(actions: list) -> TaskExit:
    assert len(actions) == 1 and isinstance(actions[0], Report), actions
    return actions[0].exit


def test_launch_gives_spawn() -> None:
    core = LauncherCore()
    r = req()
    assert core.handle(Launch(r)) == [Spawn(r)]
    assert "t" in core.running


def test_launch_twice_is_an_error() -> None:
    core = LauncherCore()
    core.handle(Launch(req()))
    with pytest.raises(RuntimeError, match="launched twice"):
        core.handle(Launch(req()))


def test_normal_exit_reports_code_and_times() -> None:
    core = LauncherCore()
    started(core, now=100.0, pid=77)
    ex = only_report(core.handle(Exited("t", 0, 101.5)))
    assert ex == TaskExit("t", 0, 100.0, 101.5, None, 77)
    assert ex.ok
    assert core.running == {}
    started(core, "u")
    ex2 = only_report(core.handle(Exited("u", 3, 102.0)))
    assert (ex2.exit_code, ex2.reason, ex2.ok) == (3, None, False)


def test_exit_by_a_foreign_signal() -> None:
    core = LauncherCore()
    started(core)
    ex = only_report(core.handle(Exited("t", -signal.SIGSEGV, 101.0)))
    assert ex.exit_code == 128 + signal.SIGSEGV
    assert ex.reason == f"killed by signal {int(signal.SIGSEGV)} (SIGSEGV)"
    assert not ex.ok


def test_spawned_sets_the_wall_time_deadline() -> None:
    core = LauncherCore(grace=2.0)
    assert core.next_deadline() is None
    started(core, walltime=5.0, now=100.0)
    assert core.next_deadline() == pytest.approx(105.0)


def test_no_wall_time_no_deadline() -> None:
    core = LauncherCore()
    started(core)
    assert core.next_deadline() is None
    assert core.handle(Tick(1e9)) == []


def test_wall_time_term_then_kill() -> None:
    core = LauncherCore(grace=2.0)
    started(core, walltime=5.0, now=100.0, pid=9)
    assert core.handle(Tick(104.99)) == []
    assert core.handle(Tick(105.0)) == [Signal("t", signal.SIGTERM)]
    assert core.next_deadline() == pytest.approx(107.0)
    assert core.handle(Tick(106.0)) == []  # no second SIGTERM
    assert core.handle(Tick(106.99)) == []
    assert core.handle(Tick(107.0)) == [Signal("t", signal.SIGKILL)]
    assert core.next_deadline() is None
    assert core.handle(Tick(200.0)) == []  # SIGKILL only once
    ex = only_report(core.handle(Exited("t", -signal.SIGKILL, 107.01)))
    assert ex.exit_code == 128 + signal.SIGKILL
    assert ex.reason is not None
    assert re.fullmatch(r"wall time .* exceeded", ex.reason), ex.reason
    assert "5s" in ex.reason
    assert (ex.started, ex.finished, ex.pid) == (100.0, 107.01, 9)
    assert core.next_deadline() is None
    assert core.running == {}


def test_wall_time_exit_after_term() -> None:
    core = LauncherCore(grace=3.0)
    started(core, walltime=0.5, now=10.0)
    assert core.handle(Tick(11.0)) == [Signal("t", signal.SIGTERM)]
    ex = only_report(core.handle(Exited("t", -signal.SIGTERM, 11.1)))
    assert ex.exit_code == 143
    assert ex.reason == "wall time of 0.5s exceeded"
    assert core.next_deadline() is None
    assert core.handle(Tick(100.0)) == []


def test_a_pause_of_the_owner_is_not_wall_time() -> None:
    """A suspended job's tasks were stopped too: the wall time, and a SIGTERM's grace, move on."""
    core = LauncherCore(grace=3.0)
    started(core, walltime=10.0, now=0.0)
    assert core.handle(Paused(6.0)) == []
    assert core.next_deadline() == 16.0
    assert core.handle(Tick(15.0)) == []
    assert core.handle(Tick(16.0)) == [Signal("t", signal.SIGTERM)]
    core.handle(Paused(2.0))  # stopped again within the grace: SIGKILL 3 s of its own time after the SIGTERM
    assert core.handle(Tick(20.0)) == []
    assert core.handle(Tick(21.0)) == [Signal("t", signal.SIGKILL)]


def test_wall_time_exit_code_zero_after_term_still_has_reason() -> None:
    core = LauncherCore(grace=3.0)
    started(core, walltime=1.0, now=0.0)
    core.handle(Tick(1.0))
    ex = only_report(core.handle(Exited("t", 0, 1.2)))  # a task that traps SIGTERM and exits 0
    assert ex.exit_code == 0
    assert ex.reason == "wall time of 1s exceeded"
    assert not ex.ok


def test_kill_running_task() -> None:
    core = LauncherCore(grace=1.0)
    started(core, now=5.0)
    assert core.handle(Kill("t", "canceled by user", 6.0)) == [Signal("t", signal.SIGTERM)]
    assert core.next_deadline() == pytest.approx(7.0)
    assert core.handle(Kill("t", "again", 6.5)) == []  # already being killed
    assert core.handle(Tick(7.0)) == [Signal("t", signal.SIGKILL)]
    ex = only_report(core.handle(Exited("t", -signal.SIGKILL, 7.1)))
    assert ex.reason == "canceled by user"
    assert ex.exit_code == 137


def test_kill_before_spawned_is_applied_once_spawned() -> None:
    core = LauncherCore(grace=1.0)
    core.handle(Launch(req()))
    assert core.handle(Kill("t", "canceled", 1.0)) == []
    assert core.handle(Spawned("t", 55, 2.0)) == [Signal("t", signal.SIGTERM)]
    assert core.next_deadline() == pytest.approx(3.0)
    assert core.handle(Tick(3.0)) == [Signal("t", signal.SIGKILL)]
    ex = only_report(core.handle(Exited("t", -signal.SIGKILL, 3.1)))
    assert (ex.exit_code, ex.reason, ex.pid) == (137, "canceled", 55)


def test_kill_before_spawned_with_wall_time() -> None:
    core = LauncherCore(grace=1.0)
    core.handle(Launch(req(walltime=100.0)))
    core.handle(Kill("t", "canceled", 1.0))
    assert core.handle(Spawned("t", 55, 2.0)) == [Signal("t", signal.SIGTERM)]
    assert core.next_deadline() == pytest.approx(3.0)
    ex = only_report(core.handle(Exited("t", -signal.SIGTERM, 2.5)))
    assert ex.reason == "canceled"


def test_kill_unknown_task_is_ignored() -> None:
    core = LauncherCore()
    assert core.handle(Kill("nope", "x", 1.0)) == []


def test_spawn_failed_reports_127_with_reason() -> None:
    core = LauncherCore()
    core.handle(Launch(req()))
    ex = only_report(core.handle(SpawnFailed("t", "could not start: No such file", 3.0)))
    assert ex == TaskExit("t", 127, 3.0, 3.0, "could not start: No such file", unstarted=True)
    assert not ex.ok
    assert core.running == {}
    core.handle(Launch(req("p")))
    ex2 = only_report(core.handle(SpawnFailed("p", "could not start: Permission denied", 4.0, 126)))
    assert ex2.exit_code == 126


def test_spawn_failed_after_kill_before_spawn() -> None:
    core = LauncherCore()
    core.handle(Launch(req(walltime=1.0)))
    core.handle(Kill("t", "canceled", 1.0))
    ex = only_report(core.handle(SpawnFailed("t", "could not start: x", 2.0)))
    assert ex.exit_code == 127
    assert core.next_deadline() is None


def test_next_deadline_is_the_earliest() -> None:
    core = LauncherCore(grace=10.0)
    started(core, "a", walltime=50.0, now=0.0)
    started(core, "b", walltime=20.0, now=0.0)
    started(core, "c", now=0.0)
    assert core.next_deadline() == pytest.approx(20.0)
    assert core.handle(Kill("a", "x", 5.0)) == [Signal("a", signal.SIGTERM)]
    assert core.next_deadline() == pytest.approx(15.0)  # a's SIGKILL at 5 + 10
    only_report(core.handle(Exited("a", -15, 6.0)))
    assert core.next_deadline() == pytest.approx(20.0)
    assert core.handle(Tick(20.0)) == [Signal("b", signal.SIGTERM)]
    assert core.next_deadline() == pytest.approx(30.0)
    only_report(core.handle(Exited("b", -15, 21.0)))
    assert core.next_deadline() is None


def test_tick_handles_several_tasks_at_once() -> None:
    core = LauncherCore(grace=1.0)
    started(core, "a", walltime=1.0, now=0.0)
    started(core, "b", walltime=2.0, now=0.0)
    started(core, "c", walltime=9.0, now=0.0)
    out = core.handle(Tick(2.5))
    assert sorted(out, key=lambda s: s.task_id) == [Signal("a", signal.SIGTERM), Signal("b", signal.SIGTERM)]


def test_unknown_event_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        LauncherCore().handle(cast(Any, object()))


# ---- an exit by a stop signal nobody here sent: held, since it is usually the allocation ending ----


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
def test_an_exit_by_someone_elses_stop_signal_is_held_then_reported_as_it_was(sig: int) -> None:
    core = LauncherCore(hold=1.0)
    started(core, now=100.0)
    assert core.handle(Exited("t", -sig, 101.0)) == []
    assert core.next_deadline() == 102.0
    assert core.handle(Tick(101.5)) == []
    ex = only_report(core.handle(Tick(102.0)))
    assert ex.exit_code == 128 + sig and ex.finished == 101.0
    assert ex.reason == f"killed by signal {sig} ({signal.Signals(sig).name})"
    assert not core.held


def test_a_held_exit_killed_by_the_run_s_own_stop_is_reported_with_its_reason() -> None:
    core = LauncherCore(hold=1.0)
    started(core, now=100.0)
    assert core.handle(Exited("t", -signal.SIGTERM, 101.0)) == []
    ex = only_report(core.handle(Kill("t", "interrupted by SIGTERM", 101.2)))
    assert ex.reason == "interrupted by SIGTERM" and ex.finished == 101.0 and not ex.ok
    assert core.handle(Tick(105.0)) == []


def test_a_kill_by_sigkill_or_a_crash_is_not_held() -> None:
    core = LauncherCore(hold=1.0)
    started(core, "a")
    started(core, "b")
    assert only_report(core.handle(Exited("a", -signal.SIGKILL, 101.0))).exit_code == 137
    assert only_report(core.handle(Exited("b", -signal.SIGSEGV, 101.0))).exit_code == 128 + signal.SIGSEGV
