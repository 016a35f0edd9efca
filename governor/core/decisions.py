"""What the Router decides, for the core to carry out (the Router changes no job itself)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.states import JobState
from hpilot.launcher.frozen import fast_init
from hpilot.partition.messages import ToPartition


@fast_init
@dataclass(frozen=True)
class Grant:
    """Send these iterations to the partition."""

    partition: str
    rec: JobRecord
    iterations: Sequence[int]


@fast_init
@dataclass(frozen=True)
class Requeue:
    """Iterations a lost partition had not finished: back to QUEUED (they are in the ready
    queue again), with the reason kept on their run."""

    rec: JobRecord
    iterations: Sequence[int]
    reason: str


@fast_init
@dataclass(frozen=True)
class Impossible:
    """End these iterations now, never started: FAILED (cannot run) or CANCELED."""

    rec: JobRecord
    iterations: Sequence[int]
    state: JobState
    reason: str


@fast_init
@dataclass(frozen=True)
class Tell:
    """Any other message for a partition: a cancel, or a step of a spanning run."""

    partition: str
    message: ToPartition


Decision = Union[Grant, Requeue, Impossible, Tell]
