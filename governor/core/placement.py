"""Which partition gets how many iterations: a small strategy, tested on its own.

The governor knows each partition's size and its *credit*: how many cores' worth of
work it may still send there (the partition's cores times a prefetch factor, minus
what is outstanding).  Sending only within credit is what balances the load: a fast
partition finishes sooner, gets its credit back sooner and so receives more; a
partition that joins late starts with full credit and gets work at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple


@dataclass(frozen=True)
class Candidate:
    name: str
    credit: int  # cores' worth of work it may still take
    cores: int  # its size


class Placement:
    """Split ``count`` iterations of ``cost`` cores each over candidates with credit.

    Most credit first, and each candidate gets at most its share in proportion to its
    credit, so that one batch does not fill the first partition while others idle.
    Never more than a candidate's credit allows; whatever does not fit now waits.
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
