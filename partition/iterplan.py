"""From a job's resource description to one iteration's allocation request.

The iteration resource schedulers of QCG-PilotJob (manual ch. 12) fix an exact
size per iteration from the number of iterations and what the partition has in
all.  QCG-PilotJob generates the sizes one by one; here each iteration's size is
a closed formula of its index, so a job of a million iterations needs no list.

``maximum-iters``: if every iteration fits at once at its minimum, the total is
shared as evenly as possible (the larger shares last); otherwise the iterations
are spread over the fewest rounds (earlier rounds get the extra iteration) and
each round shares the total evenly.  ``split-into``: the total divided into
``parts`` (default: the number of iterations) equal shares.
"""

from __future__ import annotations

import math
from typing import Optional

from hpilot.partition.allocator import ONE_CORE, Request
from hpilot.partition.resources import ResourceSet
from hpilot.partition.spec import Resources, ResourceSize


def even_share(total: int, parts: int, k: int) -> int:
    """Share ``k`` of ``total`` split into ``parts``, larger shares at the end."""
    q, r = divmod(total, parts)
    return q + 1 if k >= parts - r else q


def maximum_iters(pmin: int, iterations: int, available: int, index: int) -> int:
    if available < pmin:
        return pmin  # never below the minimum: the request is then seen as impossible
    if iterations * pmin <= available:
        return even_share(available, iterations, index)
    per_round = max(1, available // pmin)
    rounds = math.ceil(iterations / per_round)
    q, r = divmod(iterations, rounds)  # the first r rounds run q+1 iterations
    if index < r * (q + 1):
        size, k = q + 1, index % (q + 1)
    else:
        size, k = q, (index - r * (q + 1)) % q
    return even_share(available, size, k)


def split_into(parts: int, available: int) -> int:
    return available // parts


class PlanError(ValueError):
    pass


def planned_size(size: ResourceSize, iterations: int, index: int, available: int) -> Optional[int]:
    """The exact size an iteration scheduler gives iteration ``index`` (0-based), or None."""
    sched = size.scheduler
    if sched is None:
        return None
    if sched.name == "split-into":
        parts = int(sched.param("parts", iterations))
        share = split_into(parts, available)
        if share < 1:
            raise PlanError(f"split-into {parts} parts of {available} leaves nothing per part")
        return share
    return maximum_iters(max(1, size.lower), iterations, available, index)


def request_for(res: Resources, rs: ResourceSet, iterations: int = 1, index: int = 0) -> Request:
    """The allocation request of one iteration on partition ``rs``."""
    cores, nodes = res.cores, res.nodes
    if cores is None and nodes is None and not res.crs:
        return ONE_CORE
    if nodes is None:
        lo, hi = _bounds(cores, iterations, index, rs.total_cores if not res.crs else rs.max_node_cores)
        if res.crs:
            return Request(cores_min=lo, cores_max=hi, nodes_min=1, nodes_max=1, crs=res.crs)
        return Request(cores_min=lo, cores_max=hi)
    nlo, nhi = _bounds(nodes, iterations, index, len(rs.nodes))
    if cores is None:
        return Request(cores_min=1, cores_max=None, nodes_min=nlo, nodes_max=nhi,
                       whole_nodes=True, crs=res.crs)
    clo, chi = _bounds(cores, iterations, index, rs.max_node_cores)
    return Request(cores_min=clo, cores_max=chi, nodes_min=nlo, nodes_max=nhi, crs=res.crs)


def _bounds(size: Optional[ResourceSize], iterations: int, index: int, available: int):
    if size is None:
        return 1, 1
    planned = planned_size(size, iterations, index, available)
    if planned is not None:
        return planned, planned
    return size.lower, size.upper
