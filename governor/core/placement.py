"""Which partition gets how many iterations: a small strategy, tested on its own.

The governor knows each partition's size and its *credit*: how many cores' worth of
work it may still send there (the partition's cores times a prefetch factor, minus
what is outstanding).  Sending only within credit is what balances the load: a fast
partition finishes sooner, gets its credit back sooner and so receives more; a
partition that joins late starts with full credit and gets work at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple


@dataclass(frozen=True)
class Candidate:
    name: str
    credit: int  # cores' worth of work it may still take
    cores: int  # its size
    given: int = 0  # cores' worth of this work it was given so far


class Placement:
    """Split ``count`` iterations of ``cost`` cores each over candidates with credit.

    Most credit first, and each candidate gets at most its share in proportion to its
    credit, so that one batch does not fill the first partition while others idle.
    Never more than a candidate's credit allows; whatever does not fit now waits.
    At the end of a piece of work (less of it left than there is room), what is left
    evens out how much of it each candidate was given per core (``given``).
    """

    def split(self, count: int, cost: int, candidates: Sequence[Candidate]) -> List[Tuple[str, int]]:
        cost = max(1, cost)
        room = [(c, c.credit // cost) for c in candidates if c.credit >= cost]
        if count <= 0 or not room:
            return []
        room.sort(key=lambda cr: (-cr[1], cr[0].name))
        total_room = sum(r for _, r in room)
        if total_room <= count:
            return [(c.name, r) for c, r in room]
        given: Dict[str, int] = {}
        left = count
        # less work than room: the end of this work. Each gets what brings the share of it
        # that it was given, per core, to one level: a partition given a few iterations per
        # core more than the others runs a last wave of its own, and the whole ends that much
        # later (with 1 s tasks, +2% of the makespan against one flat partition)
        level = (sum(c.given for c, _ in room) + count * cost) / max(1, sum(c.cores for c, _ in room))
        for c, r in room:
            n = min(r, left, max(0, int(level * c.cores - c.given) // cost))
            if n > 0:
                given[c.name] = n
                left -= n
        if left:
            room = [(c, r - given.get(c.name, 0)) for c, r in room if r > given.get(c.name, 0)]
            for name, n in self._proportional(left, room):
                given[name] = given.get(name, 0) + n
        return sorted(given.items(), key=lambda kv: -kv[1])

    @staticmethod
    def _proportional(count: int, room: List[Tuple[Candidate, int]]) -> List[Tuple[str, int]]:
        total_room = sum(r for _, r in room)
        out: List[Tuple[str, int]] = []
        left = count
        for c, r in room:
            share = -(-count * r // total_room)  # ceil: the biggest get the rounding
            n = min(r, share, left)
            if n > 0:
                out.append((c.name, n))
                left -= n
            if left == 0:
                break
        return out
