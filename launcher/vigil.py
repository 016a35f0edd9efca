"""Silence that counts: a peer is lost when it says nothing while we listen, not while we were away.

Every heartbeat watch in hpilot (the governor over its partitions, a partition manager over
its governor, the node pool over its agents, an agent over its manager) declares its peer
gone after so many silent beats.  When the watcher itself stops running for a while, all its
peers look silent for that long when it returns, though none could have been heard: the
machine stalled, ``scontrol suspend`` (or a preemption by suspension) stopped every process of
the job, a write blocked on a stalled disk.  Counted as their silence, an 8 s stall of a
whole run lost every partition at once, and the governor then waited forever for partitions
it had declared lost (CI saw it; tests/integration/test_stall.py stops a run's processes to
show it).  So a watcher calls :meth:`Vigil.away` once per loop pass, and takes what it returns
off every peer's silence.
"""

from __future__ import annotations

import logging
from typing import Optional


class Vigil:
    """``most``: the longest a loop pass of the watcher may take when it runs (its longest
    wait, with room for the pass's own work).  A longer gap between passes is the watcher's own
    absence, less ``most`` (it may have listened for that long).  ``who`` and ``whose`` name
    the watcher and its peers in the warning a pause logs to ``log``."""

    __slots__ = ("most", "_last", "_log", "_says")

    def __init__(self, most: float, log: logging.Logger, who: str, whose: str) -> None:
        self.most = most
        self._last: Optional[float] = None
        self._log = log
        self._says = (f"{who} did not run for %.1fs (the machine stalled, or the job was suspended): "
                      f"not counted as {whose} silence")

    def away(self, now: float) -> float:
        """Seconds this process was away since its previous pass (0.0 when it was not)."""
        last, self._last = self._last, now
        if last is None or now - last <= self.most:
            return 0.0
        self._log.warning(self._says, now - last)
        return now - last - self.most


def excused(heard: float, away: float, now: float) -> float:
    """When a peer was last heard, moved on by the watcher's absence (never past ``now``)."""
    return min(now, heard + away) if away else heard
