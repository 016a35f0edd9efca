"""What the owner of a launcher (a partition, in-process or in its own manager) needs from it.

A launcher never calls back into its owner: :meth:`Launcher.launch` and
:meth:`Launcher.kill` only take note (a kill may signal a process at once), and
:meth:`Launcher.poll` does what is due (start what was launched, collect exits and
agent messages, run timers) and *returns* the events, in order.  The owner feeds
them to its core from one inbox, so no core ever runs inside another's ``handle``.

The owner's loop sleeps on ``fileno()`` (or, for launchers that talk to agents over
ZeroMQ, on ``sockets()``: a ZeroMQ socket's own descriptor is edge-triggered, so it
must be polled as the socket object) and wakes for ``next_deadline()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Protocol, Union

from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.launcher.frozen import fast_init


@fast_init
@dataclass(frozen=True)
class TaskStarted:
    """A task's process runs (pid 0: no real process, e.g. a dry run)."""

    task_id: str
    pid: int
    now: float


@fast_init
@dataclass(frozen=True)
class NodeChanged:
    """A node left (its agent died: ``up`` False) or joined late (its agent greeted)."""

    node: str
    up: bool
    reason: str
    now: float


LauncherEvent = Union[TaskStarted, TaskExit, NodeChanged]


class Launcher(Protocol):
    def fileno(self) -> int:
        """Readable when :meth:`poll` has something to do (-1: none, poll by timeout)."""

    @property
    def needs_polling(self) -> bool: ...

    @property
    def running(self) -> int:
        """Tasks launched and not yet reported ended (queued starts included)."""

    def next_deadline(self) -> Optional[float]: ...

    def launch(self, request: LaunchRequest) -> None:
        """Start the task at the next :meth:`poll`."""

    def kill(self, task_id: str, reason: str) -> None: ...

    def kill_now(self) -> None: ...

    def paused(self, seconds: float) -> None:
        """Its owner did not run for ``seconds`` (its vigil saw the job suspended, the machine
        stalled): wall-time deadlines move on by as much."""

    def poll(self) -> List[LauncherEvent]:
        """Start what was launched, collect what happened, run what is due; the events."""

    def close(self) -> None: ...


def poll_targets(launcher: Launcher) -> List[Any]:
    """What the owner's poller must watch for this launcher."""
    sockets = getattr(launcher, "sockets", None)
    if sockets is not None:
        return list(sockets())
    return [launcher.fileno()] if launcher.fileno() >= 0 else []


# What a service or partition manager is given to make its launcher.
LauncherFactory = Callable[[], Launcher]
