"""Two copies of an iteration never run at once, and work lost to a failure runs again (within limits).

**Fences.** A partition that goes silent may still be running its tasks (its host is cut
off, it hangs).  Re-queueing its iterations at once could run each twice, overlapping.  So
what a lost partition held waits here, still EXECUTING, until its tasks are known dead: the
shell feeds :class:`~hpilot.governor.core.events.FenceLifted` when the partition's process is
known to have exited and its guard's bound has passed, or when the time in which a live
partition that lost its governor kills its tasks has passed (the core has no clock).  Only
then does the Router re-queue them.  A partition that left cleanly (it said Bye) is not
fenced: it had nothing running.

**Retries.** An iteration lost to a node, agent or partition failure (never its own doing)
runs again, once by default; a job may ask for more, and for re-runs of its own failures
(``"hpilot": {"retry": {"lost": 3, "failed": 2}}``, see jobspec.py).  Each iteration's
count is kept here, by the job record and iteration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from hpilot.governor.core.registry import JobRecord

if TYPE_CHECKING:
    from hpilot.governor.core.routing import Slot


class Fences:
    def __init__(self) -> None:
        # partition -> (what it held, why it was lost, the spanning runs it led)
        self.held: Dict[str, Tuple[Slot, str, List[Tuple[JobRecord, int]]]] = {}

    def hold(self, slot: Slot, reason: str, led: List[Tuple[JobRecord, int]]) -> None:
        self.held[slot.name] = (slot, reason, led)

    def lift(self, name: str) -> Optional[Tuple[Slot, str, List[Tuple[JobRecord, int]]]]:
        return self.held.pop(name, None)

    def iterations(self) -> List[Tuple[JobRecord, List[int]]]:
        """Every fenced iteration not yet final, by job."""
        out: List[Tuple[JobRecord, List[int]]] = []
        for slot, _, led in self.held.values():
            for rec, h in slot.held.items():
                its = h.unfinished()
                if its:
                    out.append((rec, its))
            out.extend((rec, [it]) for rec, it in led if not rec.it_state(it).is_final)
        return out

    def drop_all(self) -> List[Tuple[JobRecord, List[int]]]:
        its = self.iterations()
        self.held.clear()
        return its


class Retries:
    """How often each iteration ran again, for which cause."""

    def __init__(self) -> None:
        self.lost: Dict[Tuple[int, int], int] = {}  # (id of the job record, iteration) -> re-runs after a loss
        self.failed: Dict[Tuple[int, int], int] = {}  # ... after a failure of its own

    def again_lost(self, rec: JobRecord, its: Sequence[int]) -> Tuple[List[int], List[int]]:
        """Split iterations lost to a failure into (run again, out of re-runs); counts the former."""
        return _split(self.lost, rec, its, rec.spec.retry_lost)

    def again_failed(self, rec: JobRecord, it: int) -> bool:
        again, _ = _split(self.failed, rec, (it,), rec.spec.retry_failed)
        return bool(again)

    def count(self, rec: JobRecord, it: int) -> int:
        key = (id(rec), it)
        return self.lost.get(key, 0) + self.failed.get(key, 0)


def _split(counts: Dict[Tuple[int, int], int], rec: JobRecord, its: Sequence[int],
           budget: int) -> Tuple[List[int], List[int]]:
    again: List[int] = []
    spent: List[int] = []
    for it in its:
        key = (id(rec), it)
        n = counts.get(key, 0)
        if n < budget:
            counts[key] = n + 1
            again.append(it)
        else:
            spent.append(it)
    return again, spent
