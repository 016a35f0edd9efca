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
from typing import Any, Callable, Deque, List, Optional

from hpilot.launcher.api import Launcher, LauncherEvent, NodeChanged, TaskStarted
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.partition import core as pcore
from hpilot.partition.core import KillTask, PartitionCore, Schedule
from hpilot.partition.messages import FromPartition, batched, is_exception

log = logging.getLogger("hpilot.partition")
BURST = 32  # rounds of (launcher events -> core) per step at most, so the owner's sockets are never starved


class PartitionRunner:
    def __init__(self, core: PartitionCore, launcher: Launcher) -> None:
        self.core = core
        self.launcher = launcher
        self.inbox: Deque[Any] = deque()
        self._reports: List[FromPartition] = []
        self._exception = False  # one of the reports waiting is an exception (see reports_due)
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
        return batched(out) if len(out) > 1 else out

    @property
    def has_reports(self) -> bool:
        return bool(self._reports)

    def reports_due(self, since_last: float, period: float) -> bool:
        """Whether the reports waiting should go up now (:func:`reports_due`)."""
        if not self._reports:
            return False
        return reports_due(since_last, period, self._exception,
                           lambda: not self.busy and self.core.queued_iterations == 0)

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
                if not self._exception and is_exception(a):
                    self._exception = True

    def next_deadline(self) -> Optional[float]:
        return 0.0 if self.busy else self.launcher.next_deadline()


def reports_due(since_last: float, period: float, exception: bool, drained: Callable[[], bool]) -> bool:
    """The rule for a partition manager's waiting reports, ``since_last`` seconds after the last
    ones went up: its progress goes once per ``period``, not per task end (the governor pays per
    frame, and an idle partition would send one per task); an ``exception`` goes at once, and
    so does everything when the partition is ``drained`` (nothing queued, nothing to do now):
    then the governor's refill, or whoever waits on this work, should not wait a period.
    (``drained`` is asked last: it counts the queue.)  The simulation's partitions use it too."""
    return since_last >= period or exception or drained()


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
