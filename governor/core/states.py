"""Job and iteration states, with the only transitions allowed between them.

The names and their meaning are QCG-PilotJob's (a client compares strings such as
``"SUCCEED"``), so they must never be renamed.  An illegal transition is a bug in
hpilot, not bad user input, which is why :func:`check_transition` raises.
"""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet


class JobState(enum.Enum):
    QUEUED = "QUEUED"
    SCHEDULED = "SCHEDULED"
    EXECUTING = "EXECUTING"
    SUCCEED = "SUCCEED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    OMITTED = "OMITTED"
    # hpilot's own (QCG-PilotJob has none): stopped by the end of the allocation (a signal,
    # --stop-before, a full disk), not by the task or the user.  Final for this run; the
    # next resume runs it again.  Added last: the codes of the others do not move.
    INTERRUPTED = "INTERRUPTED"

    # Members are singletons compared by identity, so the identity hash is right, and it
    # is C: the registry counts states per iteration, millions of times in a big run.
    __hash__ = object.__hash__

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    # One byte per iteration in the registry; the codes index this tuple.
    @property
    def code(self) -> int:
        return self._code  # type: ignore[attr-defined]

    @staticmethod
    def from_code(code: int) -> JobState:
        return _BY_CODE[code]


FINAL_STATES: FrozenSet[JobState] = frozenset(
    {JobState.SUCCEED, JobState.FAILED, JobState.CANCELED, JobState.OMITTED, JobState.INTERRUPTED}
)

_BY_CODE = tuple(JobState)
for _i, _state in enumerate(_BY_CODE):
    object.__setattr__(_state, "_code", _i)

_Q, _S, _E = JobState.QUEUED, JobState.SCHEDULED, JobState.EXECUTING
_OK, _FAIL, _CANCEL, _OMIT, _INT = (
    JobState.SUCCEED,
    JobState.FAILED,
    JobState.CANCELED,
    JobState.OMITTED,
    JobState.INTERRUPTED,
)

# Both jobs and single iterations follow this table.  QUEUED -> FAILED covers a
# request that can never fit; QUEUED -> EXECUTING covers a job whose iterations
# are already running on another partition when the job's summary state moves;
# EXECUTING -> QUEUED is the re-queue after a lost node or partition.  Anything not final
# may be INTERRUPTED (the run stops; a resume starts it again from QUEUED).
TRANSITIONS: Dict[JobState, FrozenSet[JobState]] = {
    _Q: frozenset({_S, _E, _FAIL, _CANCEL, _OMIT, _OK, _INT}),
    _S: frozenset({_E, _Q, _FAIL, _CANCEL, _OK, _INT}),
    _E: frozenset({_OK, _FAIL, _CANCEL, _Q, _S, _INT}),
    _OK: frozenset(),
    _FAIL: frozenset(),
    _CANCEL: frozenset(),
    _OMIT: frozenset(),
    _INT: frozenset(),
}


class IllegalTransition(RuntimeError):
    """Raised when hpilot itself tries a state change the table forbids (a bug)."""


def check_transition(what: str, old: JobState, new: JobState) -> None:
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"{what}: illegal state change {old.value} -> {new.value}")
