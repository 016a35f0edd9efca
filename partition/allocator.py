"""Exact core (and GPU/memory) allocation on a partition's nodes.

Rules, after QCG-PilotJob's scheduler (manual ch. 7.2):
- ``numCores`` alone: that many cores on any nodes, filled node by node.
- ``numNodes`` with ``numCores``: that many cores on *each* of the nodes.
- ``numNodes`` alone: whole nodes (every core of each node free), which is what an
  MPI user asking for nodes expects.
- ``min``/``max``: the most that fits right now, never less than ``min``; a missing
  ``max`` means "as much as is free".
- ``nodeCrs`` (gpu, mem) are per node; a request with them but without
  ``numNodes`` runs on one node.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Dict, List, Optional, Tuple

from hpilot.partition.resources import Node, ResourceSet


@dataclass(frozen=True)
class Slot:
    node: str
    cores: Tuple[int, ...]
    crs: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class Allocation:
    """Computed values are cached: every task's launch asks for them several times (its
    command, environment, reports), and an allocation never changes."""

    slots: Tuple[Slot, ...]

    @cached_property
    def ncores(self) -> int:
        return sum(len(s.cores) for s in self.slots)

    @property
    def nnodes(self) -> int:
        return len(self.slots)

    @cached_property
    def nodes(self) -> Tuple[str, ...]:
        return tuple(s.node for s in self.slots)

    @cached_property
    def _has_crs(self) -> bool:
        return any(s.crs for s in self.slots)

    def crs_ids(self, name: str) -> Tuple[int, ...]:
        if not self._has_crs:
            return ()
        out: List[int] = []
        for s in self.slots:
            out.extend(dict(s.crs).get(name, ()))
        return tuple(out)

    def describe(self) -> str:
        """QCG-PilotJob's form: ``n1[0:1],n2[4]``."""
        return self._described

    @cached_property
    def _described(self) -> str:
        return ",".join(f"{s.node}[{':'.join(map(str, s.cores))}]" for s in self.slots)

    @cached_property
    def memo(self) -> Dict[Any, Any]:
        """Values other modules derive from this allocation alone (a task's environment)."""
        return {}


@dataclass(frozen=True)
class Request:
    """One iteration's need, with any iteration-scheduler plan already applied."""

    cores_min: int = 1
    cores_max: Optional[int] = 1  # None: as many as are free
    nodes_min: Optional[int] = None  # None: no node count asked for
    nodes_max: Optional[int] = None
    whole_nodes: bool = False
    crs: Tuple[Tuple[str, int], ...] = ()

    @property
    def min_total_cores(self) -> int:
        return self.cores_min * (self.nodes_min or 1)


ONE_CORE = Request()


def why_never_fits(req: Request, rs: ResourceSet) -> Optional[str]:
    """Why ``req`` can never fit on ``rs``, even with every core free; None if it can."""
    total = rs.total_cores
    if req.nodes_min is None and not req.crs:
        if req.cores_min > total:
            return f"needs {req.cores_min} cores, the allocation has {total}"
        return None
    need_nodes = req.nodes_min or 1
    ok = [
        n for n in rs.nodes
        if n.total_cores >= req.cores_min and all(n.crs_total(k) >= v for k, v in req.crs)
    ]
    if len(ok) < need_nodes:
        what = f"{req.cores_min} cores" + "".join(f" and {v} {k}" for k, v in req.crs)
        return (f"needs {need_nodes} node(s) with {what} each, the allocation has {len(ok)} "
                f"such node(s) ({len(rs.nodes)} in all, at most {rs.max_node_cores} cores each)")
    return None


class _NodeState:
    __slots__ = ("node", "free", "crs_free")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.free: List[int] = list(node.cores)
        self.crs_free: Dict[str, List[int]] = {k: list(v) for k, v in node.crs}

    def has_crs(self, crs: Tuple[Tuple[str, int], ...]) -> bool:
        return all(len(self.crs_free.get(name, ())) >= n for name, n in crs)


class Allocator:
    def __init__(self, resources: ResourceSet) -> None:
        self.resources = resources
        self._nodes = [_NodeState(n) for n in resources.nodes]
        self._by_name = {s.node.name: s for s in self._nodes}
        self.free_cores = resources.total_cores
        self.total_cores = resources.total_cores
        self._single: Dict[Tuple[str, int], Allocation] = {}

    @property
    def used_cores(self) -> int:
        return self.total_cores - self.free_cores

    def allocate(self, req: Request) -> Optional[Allocation]:
        if req is ONE_CORE or (req.nodes_min is None and not req.crs and req.cores_max == 1
                               and req.cores_min == 1):
            return self._one_core()
        if req.nodes_min is None and not req.crs:
            return self._cores_anywhere(req)
        return self._on_nodes(req)

    def _one_core(self) -> Optional[Allocation]:
        if not self.free_cores:
            return None
        for st in self._nodes:
            if st.free:
                self.free_cores -= 1
                key = (st.node.name, st.free.pop(0))
                alloc = self._single.get(key)
                if alloc is None:  # one per core, made once: its cached values serve every task there
                    alloc = self._single[key] = Allocation((Slot(key[0], (key[1],)),))
                return alloc
        return None

    def _cores_anywhere(self, req: Request) -> Optional[Allocation]:
        if self.free_cores < req.cores_min:
            return None
        want = self.free_cores if req.cores_max is None else min(req.cores_max, self.free_cores)
        slots = []
        for st in self._nodes:
            if want == 0:
                break
            if st.free:
                take, st.free = st.free[:want], st.free[want:]
                want -= len(take)
                slots.append(Slot(st.node.name, tuple(take)))
        alloc = Allocation(tuple(slots))
        self.free_cores -= alloc.ncores
        return alloc

    def _on_nodes(self, req: Request) -> Optional[Allocation]:
        nodes_min = req.nodes_min or 1
        nodes_max = req.nodes_max if req.nodes_min is not None else 1
        cands = []
        for st in self._nodes:
            enough = (len(st.free) == st.node.total_cores) if req.whole_nodes else len(st.free) >= req.cores_min
            if enough and st.has_crs(req.crs):
                cands.append(st)
                if nodes_max is not None and len(cands) >= nodes_max:
                    break
        if len(cands) < nodes_min:
            return None
        slots = []
        for st in cands:
            n = len(st.free) if (req.whole_nodes or req.cores_max is None) else min(req.cores_max, len(st.free))
            take, st.free = st.free[:n], st.free[n:]
            crs = []
            for name, count in req.crs:
                ids, st.crs_free[name] = st.crs_free[name][:count], st.crs_free[name][count:]
                crs.append((name, tuple(ids)))
            slots.append(Slot(st.node.name, tuple(take), tuple(crs)))
        alloc = Allocation(tuple(slots))
        self.free_cores -= alloc.ncores
        return alloc

    def release(self, alloc: Allocation) -> None:
        for slot in alloc.slots:
            st = self._by_name[slot.node]
            if len(slot.cores) == 1:  # the usual task: one core, put back in its place
                insort(st.free, slot.cores[0])
            else:
                st.free.extend(slot.cores)
                st.free.sort()
            for name, ids in slot.crs:
                st.crs_free[name].extend(ids)
                st.crs_free[name].sort()
            self.free_cores += len(slot.cores)

    def validate(self) -> None:
        """Invariants, for tests: no core both free and lost, counts agree."""
        free = 0
        for st in self._nodes:
            assert len(set(st.free)) == len(st.free), f"{st.node.name}: a core is free twice"
            assert set(st.free) <= set(st.node.cores), f"{st.node.name}: unknown core freed"
            free += len(st.free)
        assert free == self.free_cores, f"free count {self.free_cores} != {free}"
