"""A partition at work: its core and its launcher, driven from one inbox.

Used the same way by a single manager (its one in-process partition) and by a partition
manager process (behind its link to the governor).  The governor's messages are
delivered into the inbox; :meth:`PartitionRunner.step` feeds the inbox to the core,
places what fits, lets the launcher start it and collect what ended, and feeds those
events back, until nothing more is due now.  The core's reports for the governor are
taken with :meth:`PartitionRunner.take_reports`.

Nothing here calls back into another core: the launcher returns events, the core
returns actions, and the owner (a service or a partition manager) carries the reports
to its governor from its own loop.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Set

from hpilot.launcher.api import Launcher, LauncherEvent, NodeChanged, TaskStarted
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.partition import core as pcore
from hpilot.partition.core import KillTask, PartitionCore, Schedule
from hpilot.partition.messages import FromPartition, IterationFinished, batched, is_exception

log = logging.getLogger("hpilot.partition")
BURST = 32  # rounds of (launcher events -> core) per step at most, so the owner's sockets are never starved
REPORT_EVERY = 0.1  # one partition's progress goes up this often (exceptions and an empty queue at once)
REPORT_MOST = 1.0  # ... and however many partitions share a governor, at least this often
REFILL = 0.2  # seconds a refill may take to arrive (a report's round trip): the queue should last that long


class PartitionRunner:
    def __init__(self, core: PartitionCore, launcher: Launcher) -> None:
        self.core = core
        self.launcher = launcher
        self.inbox: Deque[Any] = deque()
        self._reports: List[FromPartition] = []
        self._exception = False  # one of the reports waiting is an exception (see reports_due)
        self._starts = 0  # tasks started since the reports last went up (the pace the queue drains at)
        self._ended: Set[str] = set()  # jobs with an iteration ended since they were last looked at
        self._job_done = False  # ... and one of them has nothing left here (see reports_due)
        self._dirty = False
        # no new task starts while set (a partition manager that lost sight of its governor):
        # what runs goes on, what is queued waits
        self.paused = False

    # ---- in and out ----

    def deliver(self, msg: Any) -> None:
        """A governor's message (Work, CancelJob, Shutdown, Reserve, ...): handled at the next step."""
        self.inbox.append(msg)

    def take_reports(self) -> List[FromPartition]:
        """The reports since the last call, each job's starts and plain successes as one batch."""
        out, self._reports = self._reports, []
        self._exception = False
        self._starts = 0
        self._ended.clear()
        self._job_done = False
        return batched(out) if len(out) > 1 else out

    @property
    def has_reports(self) -> bool:
        return bool(self._reports)

    def reports_due(self, since_last: float, period: float) -> bool:
        """Whether the reports waiting should go up now (:func:`reports_due`)."""
        if not self._reports:
            return False
        return reports_due(since_last, period, self._exception,
                           lambda: not self.busy and self.core.queued_iterations == 0,
                           lambda: self._part_ended() or running_low(self.core.queued_iterations, self._starts,
                                                                     since_last))

    def _part_ended(self) -> bool:
        """Whether a job's last iteration here ended since the reports last went up: another
        job may wait on it, and should not wait a long period for it."""
        if not self._job_done and self._ended:
            holds = self.core.holds
            self._job_done = not all(holds(job) for job in self._ended)
            self._ended.clear()
        return self._job_done

    @property
    def busy(self) -> bool:
        """Something is still to do now: the owner must not sleep."""
        return bool(self.inbox) or (self._dirty and not self.paused)

    def set_deadline(self, deadline: Optional[float]) -> None:
        """The allocation's end moved (governor/service/stop.py): what waited for it is placed again."""
        self.core.cfg = dataclasses.replace(self.core.cfg, deadline=deadline)
        self._dirty = True

    def unpause(self) -> None:
        if self.paused:
            self.paused = False
            self._dirty = True  # place what waited

    # ---- the work ----

    def step(self) -> None:
        """Handle the inbox, place what fits, start it, collect what ended; repeat while the
        launcher has more (bounded: a burst of short tasks is one step, not one per task)."""
        inbox, handle, carry_out = self.inbox, self.core.handle, self._carry_out  # per task: no lookups
        for _ in range(BURST):
            while inbox:
                carry_out(handle(inbox.popleft()))
                self._dirty = True
            if self._dirty and not self.paused:
                self._dirty = False
                carry_out(handle(Schedule(time.time())))
            events = self.launcher.poll()
            if not events:
                return
            self._launcher_events(events)

    def _launcher_events(self, events: List[LauncherEvent]) -> None:
        """The launcher's events to the core, in order: a task's start and end by its direct
        entry points (no event object each, no dispatch: two per task), the rest as events."""
        core, carry_out = self.core, self._carry_out
        for ev in events:  # in their order, as through the inbox
            if isinstance(ev, TaskStarted):
                self._starts += 1
                carry_out(core.task_started(ev.task_id, ev.pid, ev.now))
            elif isinstance(ev, TaskExit) and not ev.reason:
                carry_out(core.task_ended(ev))
            else:
                carry_out(core.handle(_event(ev)))
        self._dirty = True

    def _carry_out(self, actions: List[Any]) -> None:
        for a in actions:
            kind = type(a)  # exact types: none of these is subclassed, and this runs twice per task
            if kind is LaunchRequest:
                self.launcher.launch(a)
            elif kind is KillTask:
                self.launcher.kill(a.task_id, a.reason)
            else:
                self._reports.append(a)
                if kind is IterationFinished:
                    self._ended.add(a.job)
                if not self._exception and is_exception(a):
                    self._exception = True

    def next_deadline(self) -> Optional[float]:
        return 0.0 if self.busy else self.launcher.next_deadline()


def reports_due(since_last: float, period: float, exception: bool, drained: Callable[[], bool],
                low: Callable[[], bool] = lambda: False) -> bool:
    """The rule for a partition manager's waiting reports, ``since_last`` seconds after the last
    ones went up: its progress goes once per ``period``, not per task end (the governor pays per
    frame, and an idle partition would send one per task); an ``exception`` goes at once, and
    so does everything when the partition is ``drained`` (nothing queued, nothing to do now):
    then the governor's refill, or whoever waits on this work, should not wait a period.  A
    queue running ``low`` (:func:`running_low`), or a job whose last iteration here ended (a
    job that depends on it may be waiting), sends it after REPORT_EVERY even when the period is
    longer: the refill must arrive before the cores have nothing to start, and a workflow of
    many small jobs moves as it did with frequent reports.
    (``drained`` and ``low`` are asked last: they count the queue.)  The simulation's
    partitions use it too."""
    return (since_last >= period or exception or drained()
            or (since_last >= REPORT_EVERY and period > REPORT_EVERY and low()))


def running_low(queued: int, starts: int, since_last: float) -> bool:
    """Whether ``queued`` iterations last less than REFILL at the pace of ``starts`` in the
    ``since_last`` seconds since the last report (what the governor's refill takes to come)."""
    return since_last > 0 and queued * since_last < starts * REFILL


def report_period(partitions: int) -> float:
    """How often each of ``partitions`` partition managers sends its plain progress: together they
    send the governor about 1 / REPORT_EVERY progress frames a second, however many they are.
    The governor's cost is per frame (a decode, a grant, a loop pass; the iterations in a frame
    cost little more), so with one period for all, 8 partitions cost it 1.4x the CPU per
    iteration of one.  What waits is only plain progress: failures, cancels, an emptied queue
    go at once, and a queue running low after REPORT_EVERY (:func:`reports_due`); the governor
    gives each partition enough work to last its period and a refill's round trip
    (governor/core/routing.py, ``Slot``).  At most REPORT_MOST, so that a client's view of a
    large run is never more than a second behind."""
    return min(REPORT_EVERY * max(1, partitions), REPORT_MOST)


def _event(ev: LauncherEvent) -> Any:
    """A launcher's event as the partition core's."""
    if isinstance(ev, TaskExit):
        if ev.reason:
            log.info("task %s ended: %s (exit code %s)", ev.task_id, ev.reason, ev.exit_code)
        return pcore.TaskEnded(ev)
    if isinstance(ev, TaskStarted):
        return pcore.TaskStarted(ev.task_id, ev.pid, ev.now)
    if isinstance(ev, NodeChanged):
        log.log(logging.INFO if ev.up else logging.ERROR, "node %s %s: %s", ev.node,
                "joins" if ev.up else "leaves", ev.reason)
        return pcore.NodeChanged(ev.node, ev.up, ev.reason, ev.now)
    raise TypeError(f"partition: unknown launcher event {ev!r}")
