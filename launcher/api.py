"""What the service needs from a launcher, whether local or a pool of node agents.

The service's loop depends only on this: launch and kill tasks, learn of their
ends through ``on_exit``/``on_start`` callbacks given at construction, and one
descriptor to poll (plus a deadline for timers).

A launcher that talks to agents over ZeroMQ may instead offer ``sockets()``: the
sockets and descriptors to poll.  A ZeroMQ socket's own descriptor is edge-triggered,
so it must be polled as the socket object, never through ``fileno()``.  Such a
launcher may also have an ``on_node`` attribute: the owner sets it to a callback
``(node, up, reason)`` to learn when a node leaves (its agent died) or joins late.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Protocol

from hpilot.launcher.core import LaunchRequest, TaskExit


class Launcher(Protocol):
    def fileno(self) -> int:
        """Readable when :meth:`reap` has something to do (-1: none, poll by timeout)."""

    @property
    def needs_polling(self) -> bool: ...

    @property
    def running(self) -> int: ...

    def next_deadline(self) -> Optional[float]: ...

    def launch(self, request: LaunchRequest) -> None: ...

    def kill(self, task_id: str, reason: str) -> None: ...

    def kill_now(self) -> None: ...

    def tick(self) -> None: ...

    def reap(self) -> int:
        """Handle whatever is ready (exits, agent messages); returns how many events."""

    def close(self) -> None: ...


def poll_targets(launcher: Launcher) -> List[Any]:
    """What the owner's poller must watch for this launcher."""
    sockets = getattr(launcher, "sockets", None)
    if sockets is not None:
        return list(sockets())
    return [launcher.fileno()] if launcher.fileno() >= 0 else []


# What a service or partition manager is given to make its launcher: the launcher is
# built with the owner's callbacks (a task's exit, a task's start with its pid and time).
LauncherFactory = Callable[[Callable[[TaskExit], None], Callable[[str, int, float], None]], Launcher]
