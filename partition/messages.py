"""Messages between the governor and a partition (both directions).

They are defined here, in the lower layer, because the partition consumes the
work and produces the reports; the governor imports them.  Iterations travel as
ranges where they can, so a million-iteration job is one message, not a million.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

from hpilot.partition.spec import Execution, Resources


@dataclass(frozen=True)
class TaskSpec:
    """How to run every iteration of one job (submit-time variables already filled)."""

    job: str
    execution: Execution
    resources: Resources
    iterative: bool
    it_start: int = 0
    it_count: int = 1
    it_values: Optional[Tuple[str, ...]] = None

    def task_name(self, it: int) -> str:
        return f"{self.job}:{it}" if self.iterative else self.job

    def it_value(self, it: int) -> str:
        return self.it_values[it - self.it_start] if self.it_values is not None else str(it)


# ---- governor -> partition ----


@dataclass(frozen=True)
class Work:
    spec: TaskSpec
    iterations: Sequence[int]  # a range, or a tuple for scattered ones
    now: float = 0.0


@dataclass(frozen=True)
class CancelJob:
    """Cancel a whole job, or only these of its iterations (``job:it`` canceled by a client)."""

    job: str
    reason: str
    now: float = 0.0
    iterations: Optional[Tuple[int, ...]] = None


@dataclass(frozen=True)
class Shutdown:
    reason: str
    now: float = 0.0


ToPartition = Union[Work, CancelJob, Shutdown]

# ---- partition -> governor ----


@dataclass(frozen=True)
class IterationStarted:
    job: str
    iteration: int
    allocation: str
    wd: str
    scheduled: float
    started: float
    cores: int = 1
    pid: Optional[int] = None


@dataclass(frozen=True)
class IterationFinished:
    job: str
    iteration: int
    exit_code: int
    started: float
    finished: float
    allocation: str
    wd: str
    cores: int = 1
    reason: Optional[str] = None  # why it did not end by itself (wall time, cancel, spawn)
    canceled: bool = False
    stderr_tail: Optional[str] = None  # a failed task's last stderr lines (streamed output only)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.reason is None


@dataclass(frozen=True)
class IterationsDropped:
    """Iterations that never started: impossible (FAILED) or canceled while queued."""

    job: str
    iterations: Sequence[int]
    reason: str
    when: float
    canceled: bool = False


FromPartition = Union[IterationStarted, IterationFinished, IterationsDropped]
