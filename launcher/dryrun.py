"""A launcher that runs nothing: every task "starts" at once and "succeeds" after a delay.

For measuring the control plane alone (governor, routing, partitions, the wire) without
the cost of real processes, and for tests that need a partition of a known speed.
Starts and exits are returned by :meth:`poll`, like every launcher's.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Deque, List, Optional, Set, Tuple

from hpilot.launcher.api import LauncherEvent, TaskStarted
from hpilot.launcher.core import LaunchRequest, TaskExit


class DryRunLauncher:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._starting: List[str] = []
        # (finish, task id, started): every task has the same delay, so they are due in the
        # order they started (a queue, not a heap)
        self._due: Deque[Tuple[float, str, float]] = deque()
        self._killed: Set[str] = set()

    needs_polling = False

    @property
    def running(self) -> int:
        return len(self._starting) + len(self._due)

    def fileno(self) -> int:
        return -1

    def next_deadline(self) -> Optional[float]:
        if self._starting or self._killed:
            return 0.0
        return self._due[0][0] if self._due else None

    def launch(self, request: LaunchRequest) -> None:
        self._starting.append(request.task_id)

    def kill(self, task_id: str, reason: str) -> None:
        self._killed.add(task_id)

    def paused(self, seconds: float) -> None:
        """Dry-run tasks end when they are due: nothing waits on a wall time."""

    def kill_now(self) -> None:
        self._killed.update(t for _, t, _ in self._due)
        self._killed.update(self._starting)

    def poll(self) -> List[LauncherEvent]:
        now = time.time()
        out: List[LauncherEvent] = []
        starting, self._starting = self._starting, []
        due = self._due
        end = now + self.delay
        for task_id in starting:
            out.append(TaskStarted(task_id, 0, now))
            due.append((end, task_id, now))
        if self._killed:  # a killed task ends now, wherever it is in the queue
            killed = [e for e in due if e[1] in self._killed]
            if killed:
                self._due = due = deque(e for e in due if e[1] not in self._killed)
                out.extend(TaskExit(task_id, -9, started, now, "killed", 0) for _, task_id, started in killed)
            self._killed.clear()
        while due and due[0][0] <= now:
            _, task_id, started = due.popleft()
            out.append(TaskExit(task_id, 0, started, now, None, 0))
        return out

    def close(self) -> None:
        self._due.clear()
        self._starting.clear()
