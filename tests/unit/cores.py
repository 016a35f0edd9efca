"""Governor cores for tests, in the two shapes every manager has: one in-process partition
(a single manager) or several partitions that registered (a governor).  And a fake host:
the core reads no file system, so tests say which programs and directories exist."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from hpilot.governor.core.events import Action, PartitionJoined, SendToPartition
from hpilot.governor.core.governor import GovernorConfig, GovernorCore
from hpilot.governor.core.host import EXECUTABLE, MISSING, NoHost
from hpilot.partition.messages import Work
from hpilot.partition.resources import ResourceSet, local_resources

LOCAL_CREDIT = 1 << 62  # as the service gives its in-process partition
SHAPES = ("one", "several")
# (name, nodes) of each shape's partitions: the same 8 cores on two 4-core nodes
PARTITIONS: Dict[str, Sequence[Tuple[str, str]]] = {
    "one": [("p0", "n1:4,n2:4")],
    "several": [("p0", "n1:4"), ("p1", "n2:4")],
}


class FakeHost(NoHost):
    """Programs and paths exist unless listed in ``missing``; directories under one of
    ``unwritable`` cannot be made.  Local time is UTC (deterministic)."""

    def __init__(self) -> None:
        self.missing: Set[str] = set()
        self.unwritable: Set[str] = set()

    def hostname(self) -> str:
        return "testhost"

    def which(self, program: str, path: Optional[str]) -> Optional[str]:
        return None if program in self.missing else f"/usr/bin/{program}"

    def kind(self, path: str) -> str:
        return MISSING if path in self.missing else EXECUTABLE

    def make_dir(self, path: str) -> Optional[str]:
        for bad in self.unwritable:
            if path == bad or path.startswith(bad.rstrip("/") + "/"):
                return f"cannot create {path}: Not a directory"
        return None


def make_core(root: Path, shape: str = "one", nodes: Optional[str] = None, started: float = 1000.0,
              host: Optional[FakeHost] = None, models: Optional[Sequence[str]] = None) -> GovernorCore:
    """A core with its partitions joined; ``nodes`` (one shape only) overrides the default."""
    parts = [("p0", nodes)] if nodes is not None else list(PARTITIONS[shape])
    allocation = ResourceSet(tuple(n for _, spec in parts for n in local_resources(spec).nodes), False, "local")
    kw = {"models": tuple(models)} if models is not None else {}
    core = GovernorCore(GovernorConfig(root_wd=str(root), started=started, allocation=allocation, **kw),
                        host or FakeHost())
    for name, spec in parts:
        rs = local_resources(spec)
        credit = LOCAL_CREDIT if shape == "one" else None
        core.handle(PartitionJoined(name, tuple((n.name, len(n.cores)) for n in rs.nodes), now=started,
                                    credit=credit))
    return core


class Where:
    """Which partition each iteration was sent to, learnt from the core's Work messages."""

    def __init__(self) -> None:
        self.batches: Dict[str, List[Tuple[Sequence[int], str]]] = {}

    def learn(self, actions: List[Action]) -> None:
        for a in actions:
            if isinstance(a, SendToPartition) and isinstance(a.message, Work):
                self.batches.setdefault(a.message.spec.job, []).append((a.message.iterations, a.partition))

    def of(self, job: str, it: int, default: str = "p0") -> str:
        for its, part in reversed(self.batches.get(job, [])):
            if it in its:
                return part
        return default
