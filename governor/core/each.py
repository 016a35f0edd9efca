"""Per-iteration dependencies: ``"after": ["a:${it}"]`` makes iteration i wait for a:i.

This is QCG-PilotJob's pipeline of sweeps (prepare:i -> simulate:i -> analyse:i): each
iteration starts as soon as its own predecessors succeeded, not when the whole job
before it is done.  An iteration whose predecessor did not succeed is OMITTED on its
own (and its own successors after it); the job then ends FAILED, as in QCG-PilotJob,
since part of its work was not done.

The job itself is *dispatched* once its whole-job dependencies are met; its iterations
go to the partitions as they become ready (:meth:`GovernorCore.dispatch_its`).  The
iterations not sent yet are the keys of ``rec.it_unmet`` (iteration -> predecessors
still unfinished).  Everything is derived from the iteration states, so a resume that
replays the journal and links the job again rebuilds it exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.states import JobState

if TYPE_CHECKING:
    from hpilot.governor.core.governor import Action, GovernorCore


class EachWaits:
    def __init__(self) -> None:
        # predecessor job -> its iteration -> dependants waiting for that iteration
        self.waiting: Dict[str, Dict[int, List[JobRecord]]] = {}

    def link(self, core: GovernorCore, rec: JobRecord, now: float, out: List[Action]) -> None:
        """Set up the waits of ``rec``'s queued iterations; omit those whose predecessor failed already."""
        preds = [(name, core.registry.get(name)) for name in rec.spec.each]
        unmet: Dict[int, int] = {}
        broken: Dict[Tuple[str, str], List[int]] = {}  # (predecessor, its state) -> iterations
        for it in rec.iterations():
            if rec.it_state(it) is not JobState.QUEUED:
                continue  # finished before a resume
            open_: List[str] = []
            why: Optional[Tuple[str, str]] = None
            for name, pred in preds:
                st = pred.it_state(it) if pred is not None else JobState.OMITTED
                if st is JobState.SUCCEED:
                    continue
                if st.is_final:
                    why = (name, st.value)
                    break
                open_.append(name)
            if why is not None:
                broken.setdefault(why, []).append(it)
            elif open_:
                unmet[it] = len(open_)
                for name in open_:
                    self.waiting.setdefault(name, {}).setdefault(it, []).append(rec)
        rec.it_unmet = unmet
        for (name, state), its in broken.items():
            core._drop(rec, tuple(its), JobState.OMITTED, _reason(name, its, state), now, out)

    def final(self, core: GovernorCore, pred: JobRecord, its: Sequence[int], state: JobState, now: float,
              out: List[Action]) -> None:
        """Iterations ``its`` of ``pred`` ended in ``state``: their waiting successors go, or are omitted."""
        by_it = self.waiting.get(pred.name)
        if not by_it:
            return
        hits = [it for it in its if it in by_it] if len(its) <= len(by_it) else [it for it in by_it if it in its]
        ready: Dict[int, Tuple[JobRecord, List[int]]] = {}
        for it in hits:
            for rec in by_it.pop(it):
                if core.registry.get(rec.name) is not rec or rec.it_unmet is None or it not in rec.it_unmet:
                    continue
                if state is JobState.SUCCEED and rec.it_unmet[it] > 1:
                    rec.it_unmet[it] -= 1
                    continue
                del rec.it_unmet[it]
                ready.setdefault(id(rec), (rec, []))[1].append(it)
        if not by_it:
            del self.waiting[pred.name]
        for rec, ready_its in ready.values():
            if state is JobState.SUCCEED:
                if rec.dispatched and not rec.canceled:
                    queued = tuple(it for it in ready_its if rec.it_state(it) is JobState.QUEUED)
                    core.dispatch_its(rec, queued, out)
            elif state is JobState.INTERRUPTED:  # the run stops: they wait for the resume, not omitted
                core._drop(rec, tuple(ready_its), state, core.interrupted or "interrupted", now, out)
            else:
                core._drop(rec, tuple(ready_its), JobState.OMITTED, _reason(pred.name, ready_its, state.value),
                           now, out)

    def take_held(self, rec: JobRecord, its: Optional[Sequence[int]] = None) -> Tuple[int, ...]:
        """Take iterations (all, or these) out of waiting: they will never be sent (a cancel)."""
        if not rec.it_unmet:
            return ()
        held = tuple(it for it in (rec.it_unmet if its is None else its) if it in rec.it_unmet)
        for it in held:
            del rec.it_unmet[it]
        return tuple(sorted(held))


def _reason(pred: str, its: Sequence[int], state: str) -> str:
    if len(its) == 1:
        return f"omitted: dependency {pred}:{its[0]} {state}"
    return f"omitted: dependency {pred}:${{it}} {state}"
