"""The client requests that change jobs from outside: cancelJob, removeJob, control.

Their answers are QCG-PilotJob's: code 0 with the count done and, per name that could
not be acted on, the reason in ``data.errors`` (QCG-PilotJob's client raises on none of
them); a malformed request gets code 1 and QCG-PilotJob's message start.  The work itself
(canceling a job or one iteration) stays in :class:`GovernorCore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from hpilot.governor.core import qcg, queries, records
from hpilot.governor.core.qcg import ERROR, OK

if TYPE_CHECKING:
    from hpilot.governor.core.governor import Action, GovernorCore


def response(code: int, message: str = "", data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"code": code}
    if message:
        out["message"] = message
    if data is not None:
        out["data"] = data
    return out


def req_cancel(core: GovernorCore, payload: Dict[str, Any], now: float, out: List[Action]) -> Dict[str, Any]:
    """QCG-PilotJob's answer: code 0, the count in ``data.canceled``, and each name that
    could not be canceled in ``data.errors`` (its client raises on none of them)."""
    names, err = queries.job_names(payload)
    if err:
        return err
    results: Dict[str, Dict[str, Any]] = {}
    for name in names:
        why = _cancel_one(core, name, now, out)
        results[name] = {"status": OK, "message": "canceled"} if why is None else {"status": ERROR,
                                                                                   "message": why}
    errors = {n: r["message"] for n, r in results.items() if r["status"] != OK}
    ok = len(names) - len(errors)
    message = f"{ok} of {len(names)} jobs canceled" + (f": {'; '.join(errors.values())}" if errors else "")
    data: Dict[str, Any] = {"canceled": ok, "jobs": results}
    if errors:
        data["errors"] = errors
    return response(OK, message, data)


def _cancel_one(core: GovernorCore, name: str, now: float, out: List[Action]) -> Optional[str]:
    """Cancel a job or one iteration (``job:it``); None, or why it cannot be."""
    job, it = qcg.split_name(name)
    rec = core.registry.get(job)
    if rec is None:
        return f"Job/iteration {name} doesn't exist"
    if it is None:
        if rec.canceled:
            return f"Job {name} already canceled"
        if rec.state.is_final:
            return f"Job/iteration {name} already finished ({rec.state.value}) - can not be canceled"
        core._cancel(rec, now, out)
        return None
    if not rec.task.iterative or it not in rec.iterations():
        return qcg.unknown_iteration(job, it, rec.iterations() if rec.task.iterative else None)
    state = rec.it_state(it)
    if state.is_final or rec.canceled:
        return f"Job/iteration {name} already finished ({state.value}) - can not be canceled"
    core._cancel_iteration(rec, it, now, out)
    return None


def req_remove(core: GovernorCore, payload: Dict[str, Any], now: float, out: List[Action]) -> Dict[str, Any]:
    """QCG-PilotJob's answer: code 0, ``data.removed``, and ``data.errors`` per name not removed."""
    from hpilot.governor.core.governor import Record

    names, err = queries.job_names(payload)
    if err:
        return err
    removed, problems = 0, {}
    for name in names:
        rec = core.registry.get(name)
        if rec is None:
            problems[name] = f"Job '{name}' doesn't exist"
        elif not rec.state.is_final:
            problems[name] = f"Job '{name}' not finished ({rec.state.value}) - can not be removed; cancel it first"
        else:
            core.forget(rec)
            removed += 1
            if core.journaling:
                out.append(Record(records.json_record({"t": "remove", "time": now, "jobs": [name]})))
    data: Dict[str, Any] = {"removed": removed}
    if problems:
        data["errors"] = problems
        return response(OK, f"{removed} jobs removed: " + "; ".join(problems.values()), data)
    return response(OK, f"{removed} jobs removed", data)


def req_control(core: GovernorCore, payload: Dict[str, Any], now: float, out: List[Action]) -> Dict[str, Any]:
    command = payload.get("command")
    if command == "finishAfterAllTasksDone":
        core.finish_when_done = True
        return response(OK, f"{command} command accepted: the service will finish when all jobs are done")
    if not isinstance(command, str):
        return response(ERROR, qcg.invalid("Wrong control request - missing command"))
    return response(ERROR, qcg.invalid(f'Wrong control request - unknown command "{command}" '
                                       "(known: finishAfterAllTasksDone)"))
