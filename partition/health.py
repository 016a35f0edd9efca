"""Nodes where tasks cannot start: taken out of service, and what failed there runs elsewhere.

A task that cannot be started (fork fails, its working directory or program is missing on
that node) is the user's problem when it fails the same way everywhere: it is FAILED with
the reason.  But when the same job's tasks start on other nodes, it is the node's: the
iteration is reported ``lost`` (the governor runs it again elsewhere, like a task of a lost
node), and after :data:`LIMIT` such failures in a row, while other nodes started tasks, the
node is taken out of service with the reason (shown in ``resources``, ``status`` and
``service.log``).  Pure: the partition core feeds it.
"""

from __future__ import annotations

from typing import Dict, Optional, Set, Tuple

LIMIT = 3


class StartHealth:
    def __init__(self) -> None:
        self._starts = 0  # tasks started anywhere in this partition
        self._streak: Dict[str, int] = {}  # node -> failed starts in a row
        self._since: Dict[str, int] = {}  # node -> self._starts when its streak began
        self._started_on: Dict[str, Set[str]] = {}  # job -> nodes where one of its tasks started

    def started(self, job: str, node: str) -> None:
        self._starts += 1
        if self._streak:  # a failed start somewhere: rare
            self._streak.pop(node, None)
        nodes = self._started_on.get(job)
        if nodes is None:
            self._started_on[job] = {node}
        elif node not in nodes:
            nodes.add(node)

    def failed(self, job: str, node: str, reason: Optional[str]) -> Tuple[bool, Optional[str]]:
        """A task of ``job`` could not start on ``node``: (is it the node's doing, the reason to
        take the node out of service now, if so)."""
        if not self._started_on.get(job):  # it never started anywhere: the job's own problem
            return False, None
        n = self._streak.get(node, 0) + 1
        self._streak[node] = n
        if n == 1:
            self._since[node] = self._starts
        if n >= LIMIT and self._starts > self._since[node]:  # others kept starting tasks: it is this node
            self._streak.pop(node, None)
            return True, f"{n} tasks in a row could not start here (last: {reason})"
        return True, None
