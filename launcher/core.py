"""The launcher's pure core: which children run, their deadlines, and how they end.

No processes, no clock: the shell feeds events stamped with the time and carries
out the actions.  Wall time and cancel share one mechanism: SIGTERM, then SIGKILL
after ``grace`` seconds, and the exit is reported with the reason, so a task
killed for its wall time is FAILED with "wall time ... exceeded", not a bare 143.

A task killed by a stop signal nobody here sent (SIGTERM, SIGINT, SIGHUP, SIGUSR1/2) is
usually the allocation ending: Slurm signals every process of the job at once, the tasks
as well as hpilot.  Its exit is held ``hold`` seconds before it is reported, so that the
run's own stop, which comes with the same signal, finds it still running and ends it as
interrupted (to run again on resume) rather than FAILED.  If nothing comes, it is
reported as it was, a failure.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from hpilot.launcher.frozen import fast_init

# ---- what the launcher accepts and reports (its own types, see DESIGN.md) ----


@fast_init
@dataclass(frozen=True)
class LaunchRequest:
    task_id: str
    argv: Tuple[str, ...]
    env: Optional[Dict[str, str]]  # the complete environment; None: inherit
    wd: str
    stdin: Optional[str] = None
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    cpus: Optional[Tuple[int, ...]] = None  # CPU affinity, when the core ids are real
    walltime: Optional[float] = None
    node: Optional[str] = None  # where to start it (the first node of a multi-node task)


@fast_init
@dataclass(frozen=True)
class TaskExit:
    task_id: str
    exit_code: int
    started: float
    finished: float
    reason: Optional[str] = None  # set when the task did not end by itself
    pid: Optional[int] = None
    stderr_tail: Optional[str] = None  # a failed task's last stderr lines, when its output was streamed
    unstarted: bool = False  # its process could not be started (``reason`` says why)
    lost: bool = False  # its node was lost under it (its agent died, or cannot be reached): not its doing

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.reason is None and not self.lost


# ---- events in ----


@fast_init
@dataclass(frozen=True)
class Launch:
    request: LaunchRequest


@fast_init
@dataclass(frozen=True)
class Spawned:
    task_id: str
    pid: int
    now: float


@fast_init
@dataclass(frozen=True)
class SpawnFailed:
    task_id: str
    error: str
    now: float
    exit_code: int = 127


@fast_init
@dataclass(frozen=True)
class Exited:
    task_id: str
    returncode: int  # as subprocess gives it: negative for a signal
    now: float


@fast_init
@dataclass(frozen=True)
class Kill:
    task_id: str
    reason: str
    now: float


@fast_init
@dataclass(frozen=True)
class Tick:
    now: float


@fast_init
@dataclass(frozen=True)
class Paused:
    """The launcher's owner did not run for ``seconds`` (launcher/vigil.py): a suspended job's
    tasks were stopped with it, so the pause is not their wall time."""

    seconds: float


Event = Union[Launch, Spawned, SpawnFailed, Exited, Kill, Tick, Paused]

# ---- actions out ----


@fast_init
@dataclass(frozen=True)
class Spawn:
    request: LaunchRequest


@fast_init
@dataclass(frozen=True)
class Signal:
    task_id: str
    signum: int


@fast_init
@dataclass(frozen=True)
class Report:
    exit: TaskExit


Action = Union[Spawn, Signal, Report]


class _Run:
    __slots__ = ("request", "pid", "started", "deadline", "reason", "kill_at")

    def __init__(self, request: LaunchRequest) -> None:
        self.request = request
        self.pid: Optional[int] = None
        self.started = 0.0
        self.deadline: Optional[float] = None  # wall time end
        self.reason: Optional[str] = None  # why we are killing it
        self.kill_at: Optional[float] = None  # SIGKILL after SIGTERM


def _fmt_secs(s: float) -> str:
    return f"{s:g}s"


# signals that stop a run (Slurm's at the end of an allocation, a Ctrl-C, --signal's choice)
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2})
HOLD = 1.0  # seconds an exit by such a signal is held back (see above)


class LauncherCore:
    def __init__(self, grace: float = 3.0, hold: float = HOLD) -> None:
        self.grace = grace
        self.hold = hold
        self.running: Dict[str, _Run] = {}
        self._timed: Dict[str, _Run] = {}  # runs with a wall time or a pending SIGKILL
        self.held: Dict[str, Tuple[TaskExit, float]] = {}  # exits by a stop signal: (exit, report at)

    def handle(self, ev: Event) -> List[Action]:
        if isinstance(ev, Launch):
            if ev.request.task_id in self.running:
                raise RuntimeError(f"task {ev.request.task_id} launched twice")
            self.running[ev.request.task_id] = _Run(ev.request)
            return [Spawn(ev.request)]
        if isinstance(ev, Spawned):
            run = self.running[ev.task_id]
            run.pid, run.started = ev.pid, ev.now
            if run.request.walltime:
                run.deadline = ev.now + run.request.walltime
                self._timed[ev.task_id] = run
            if run.reason is not None:  # killed before it even started
                return self._term(ev.task_id, run, run.reason, ev.now)
            return []
        if isinstance(ev, SpawnFailed):
            self.running.pop(ev.task_id)
            return [Report(TaskExit(ev.task_id, ev.exit_code, ev.now, ev.now, ev.error, unstarted=True))]
        if isinstance(ev, Exited):
            return self._exited(ev)
        if isinstance(ev, Kill):
            if ev.task_id in self.held:  # the run's stop came: it was ended by it, not by itself
                ex, _ = self.held.pop(ev.task_id)
                return [Report(dataclasses.replace(ex, reason=ev.reason))]
            target = self.running.get(ev.task_id)
            if target is None or target.kill_at is not None:
                return []
            if target.pid is None:
                target.reason = ev.reason
                return []
            return self._term(ev.task_id, target, ev.reason, ev.now)
        if isinstance(ev, Tick):
            return self._tick(ev.now)
        if isinstance(ev, Paused):
            for run in self._timed.values():  # wall times, and the grace of a SIGTERM sent, move on
                if run.kill_at is not None and run.kill_at != float("inf"):
                    run.kill_at += ev.seconds
                elif run.deadline is not None:
                    run.deadline += ev.seconds
            return []
        raise TypeError(f"launcher: unknown event {ev!r}")

    def _term(self, task_id: str, run: _Run, reason: str, now: float) -> List[Action]:
        run.reason = reason
        run.kill_at = now + self.grace
        self._timed[task_id] = run
        return [Signal(task_id, signal.SIGTERM)]

    def _exited(self, ev: Exited) -> List[Action]:
        run = self.running.pop(ev.task_id)
        self._timed.pop(ev.task_id, None)
        code = ev.returncode
        reason = run.reason
        if code < 0:
            sig = -code
            code = 128 + sig
            if reason is None:
                if sig in STOP_SIGNALS and self.hold > 0:  # the allocation ending, most likely: wait
                    ex = TaskExit(ev.task_id, code, run.started, ev.now, f"killed by signal {sig} ({_signame(sig)})",
                                  run.pid)
                    self.held[ev.task_id] = (ex, ev.now + self.hold)
                    return []
                reason = f"killed by signal {sig} ({_signame(sig)})"
        return [Report(TaskExit(ev.task_id, code, run.started, ev.now, reason, run.pid))]

    def _tick(self, now: float) -> List[Action]:
        out: List[Action] = []
        for task_id, (ex, due) in list(self.held.items()):
            if now >= due:
                del self.held[task_id]
                out.append(Report(ex))
        for task_id, run in list(self._timed.items()):
            if run.kill_at is not None:
                if now >= run.kill_at:
                    run.kill_at = float("inf")
                    out.append(Signal(task_id, signal.SIGKILL))
            elif run.deadline is not None and now >= run.deadline:
                wt = run.request.walltime or 0.0
                out.extend(self._term(task_id, run, f"wall time of {_fmt_secs(wt)} exceeded", now))
        return out

    def next_deadline(self) -> Optional[float]:
        best: Optional[float] = None
        for run in self._timed.values():
            t = run.kill_at if run.kill_at is not None else run.deadline
            if t is not None and t != float("inf") and (best is None or t < best):
                best = t
        for _, due in self.held.values():
            if best is None or due < best:
                best = due
        return best


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "unknown"
