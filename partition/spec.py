"""What a partition needs to know to run a job's iterations.

The governor parses user descriptions into these records; the partition turns
one of them plus the cores it allocated into a launch request.  They live here,
in the layer that consumes them, so that the partition never imports upwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from hpilot.partition.variables import Template


@dataclass(frozen=True)
class IterSchedulerSpec:
    name: str
    params: Tuple[Tuple[str, Any], ...] = ()

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class ResourceSize:
    exact: Optional[int] = None
    min: Optional[int] = None
    max: Optional[int] = None
    scheduler: Optional[IterSchedulerSpec] = None

    @property
    def lower(self) -> int:
        if self.exact is not None:
            return self.exact
        return self.min if self.min is not None else 1

    @property
    def upper(self) -> Optional[int]:
        return self.exact if self.exact is not None else self.max

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for key in ("exact", "min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.scheduler is not None:
            out["scheduler"] = {"name": self.scheduler.name, "params": dict(self.scheduler.params)}
        return out


@dataclass(frozen=True)
class Resources:
    cores: Optional[ResourceSize] = None
    nodes: Optional[ResourceSize] = None
    crs: Tuple[Tuple[str, int], ...] = ()
    wt: Optional[float] = None  # seconds

    @property
    def min_cores(self) -> int:
        """Fewest cores one iteration can run on (numCores is per node with numNodes)."""
        per = self.cores.lower if self.cores else 1
        return per * (self.nodes.lower if self.nodes else 1)


@dataclass(frozen=True)
class Execution:
    exec: Optional[Template] = None
    args: Tuple[Template, ...] = ()
    script: Optional[Template] = None
    env: Tuple[Tuple[str, Template], ...] = ()
    wd: Optional[Template] = None
    stdin: Optional[Template] = None
    stdout: Optional[Template] = None
    stderr: Optional[Template] = None
    modules: Tuple[Template, ...] = ()
    venv: Optional[Template] = None
    model: str = "default"
    model_opts: Tuple[Tuple[str, Any], ...] = ()
