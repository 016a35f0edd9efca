"""The nodes and cores a partition may use, and where they come from.

Local mode takes ``--nodes`` specs (``4``, ``n1:2``, ``4,2,2``, ``n1:4,n2:4``) or,
without it, the cores this process may run on.  Only the latter are *real* core
ids, so only then are tasks bound to their cores: binding virtual ids that do not
match the machine would pin every task of a ``--nodes 16`` run onto two CPUs.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple


class ResourceError(ValueError):
    """A resource description that cannot be used; the message says why."""


@dataclass(frozen=True)
class Node:
    name: str
    cores: Tuple[int, ...]
    # Consumable resources: "gpu" -> device ids, "mem" -> amount in MB (as ids 0..n-1).
    crs: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()

    @property
    def total_cores(self) -> int:
        return len(self.cores)

    def crs_total(self, name: str) -> int:
        return len(dict(self.crs).get(name, ()))


@dataclass(frozen=True)
class ResourceSet:
    nodes: Tuple[Node, ...]
    binding: bool  # core ids are real CPU ids of the machine(s): bind tasks to them
    source: str  # "local", "nodes-spec", "config", "slurm"
    system_core: bool = False

    @property
    def total_cores(self) -> int:
        return sum(n.total_cores for n in self.nodes)

    @property
    def max_node_cores(self) -> int:
        return max((n.total_cores for n in self.nodes), default=0)


def parse_nodes_spec(spec: str) -> List[Tuple[str, int]]:
    """``"n1:4, n2:4"`` -> ``[("n1", 4), ("n2", 4)]``; unnamed nodes get n0, n1, ..."""
    out: List[Tuple[str, int]] = []
    parts = [p.strip() for p in str(spec).split(",")]
    if not any(parts):
        raise ResourceError("--nodes is empty; expected e.g. '4', 'n1:2' or 'n1:4,n2:4'")
    for i, part in enumerate(parts):
        if not part:
            raise ResourceError(f"--nodes {spec!r}: empty entry at position {i + 1}")
        name, sep, count = part.rpartition(":")
        if not sep:
            name, count = "", part
        name = name.strip() or _free_name(i, parts)
        try:
            cores = int(count)
        except ValueError:
            raise ResourceError(f"--nodes {spec!r}: {part!r} is not NAME:CORES or CORES") from None
        if cores < 1:
            raise ResourceError(f"--nodes {spec!r}: node {name} needs at least 1 core")
        if any(n == name for n, _ in out):
            raise ResourceError(f"--nodes {spec!r}: node {name} given twice")
        out.append((name, cores))
    return out


def _free_name(i: int, parts: List[str]) -> str:
    """A name for an unnamed node that no named entry uses (n1:2,2 -> n1 and n1_1)."""
    taken = {p.rpartition(":")[0].strip() for p in parts}
    name = f"n{i}"
    while name in taken:
        name += "_1"
    return name


def local_resources(
    nodes_spec: Optional[str] = None,
    node_config: Optional[Sequence[Dict[str, object]]] = None,
    system_core: bool = False,
) -> ResourceSet:
    """Resources for local mode, in order of precedence: --nodes, TOML nodes, this machine."""
    if nodes_spec:
        nodes = [Node(name, tuple(range(cores))) for name, cores in parse_nodes_spec(nodes_spec)]
        return _reserve(ResourceSet(tuple(nodes), binding=False, source="nodes-spec"), system_core)
    if node_config:
        return _reserve(_from_config(node_config), system_core)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(
        range(os.cpu_count() or 1)
    )
    host = socket.gethostname().split(".")[0] or "localhost"
    return _reserve(ResourceSet((Node(host, tuple(cpus)),), binding=True, source="local"), system_core)


def _from_config(node_config: Sequence[Dict[str, object]]) -> ResourceSet:
    nodes: List[Node] = []
    for i, entry in enumerate(node_config):
        where = f"config resources.nodes[{i}]"
        if not isinstance(entry, dict):
            raise ResourceError(f"{where}: must be a table with name and cores")
        unknown = set(entry) - {"name", "cores", "gpu", "mem"}
        if unknown:
            raise ResourceError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: name, cores, gpu, mem")
        name = str(entry.get("name") or f"n{i}")
        cores = entry.get("cores")
        if isinstance(cores, int) and not isinstance(cores, bool):
            core_ids: Tuple[int, ...] = tuple(range(cores))
        elif isinstance(cores, list) and all(isinstance(c, int) for c in cores):
            core_ids = tuple(cores)
        else:
            raise ResourceError(f"{where}.cores: a number of cores or a list of core ids")
        if not core_ids:
            raise ResourceError(f"{where}.cores: node {name} needs at least one core")
        crs = []
        for cr in ("gpu", "mem"):
            val = entry.get(cr)
            if val is None:
                continue
            if isinstance(val, int) and not isinstance(val, bool) and val >= 0:
                crs.append((cr, tuple(range(val))))
            elif cr == "gpu" and isinstance(val, list) and all(isinstance(g, int) for g in val):
                crs.append((cr, tuple(val)))
            else:
                raise ResourceError(f"{where}.{cr}: a whole number (gpu may also be a list of device ids)")
        nodes.append(Node(name, core_ids, tuple(crs)))
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ResourceError("config resources.nodes: node names must be unique")
    return ResourceSet(tuple(nodes), binding=False, source="config")


def _reserve(rs: ResourceSet, system_core: bool) -> ResourceSet:
    """--system-core: keep the first core of the first node for hpilot itself."""
    if not system_core:
        return rs
    first = rs.nodes[0]
    if first.total_cores < 2 and len(rs.nodes) == 1:
        raise ResourceError("--system-core needs at least 2 cores (one is kept for hpilot)")
    rest = (Node(first.name, first.cores[1:], first.crs),) if first.total_cores > 1 else ()
    return ResourceSet(rest + rs.nodes[1:], rs.binding, rs.source, system_core=True)


reserve_system_core = _reserve  # also used for Slurm resources (partition/slurm.py)


def describe(rs: ResourceSet) -> str:
    nodes = ", ".join(f"{n.name}:{n.total_cores}" for n in rs.nodes)
    bound = "bound to cores" if rs.binding else "not bound (virtual cores)"
    return f"{len(rs.nodes)} node(s), {rs.total_cores} core(s) [{nodes}], {bound}"
