"""What QCG-PilotJob's clients expect of an answer, in one place.

QCG-PilotJob 0.14.2's client (``qcg.pilotjob.api.manager``) raises on any answer whose
``code`` is not 0 and reads ``data`` of every other; its service answers errors with
code 1 and messages that start in set ways (``Invalid request: Wrong submit request -
missing jobs data``).  hpilot keeps its own, more precise explanations, after the same
start, so that a client matching QCG-PilotJob's text still matches.

Iterations have names of their own, ``job:it``, in ``jobStatus``, ``jobInfo`` and
``cancelJob``: :func:`split_name` reads them.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

OK, ERROR = 0, 1  # QCG-PilotJob's ResponseCode

# what QCG-PilotJob's request parser says before its reason, per request
MISSING_NAMES = {
    "jobStatus": "Wrong job status request - missing job names",
    "jobInfo": "Wrong job info request - missing job names",
    "cancelJob": "Wrong cancel job request - missing job names",
    "removeJob": "Wrong remove job request - missing job names",
}
MISSING_JOBS = "Wrong submit request - missing jobs data"


def invalid(reason: str) -> str:
    """QCG-PilotJob's text for a request its parser refuses."""
    return f"Invalid request: {reason}"


def error(message: str, data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"code": ERROR, "message": message}
    if data is not None:
        out["data"] = data
    return out


def split_name(name: str) -> Tuple[str, Optional[int]]:
    """``"job:3"`` -> ("job", 3); ``"job"`` -> ("job", None).  A part after ':' that is not
    a whole number leaves the name whole (no job has ':' in its name, so it is unknown)."""
    job, sep, it = name.partition(":")
    if not sep:
        return name, None
    try:
        return job, int(it)
    except ValueError:
        return name, None


def unknown_job(name: str) -> str:
    return f"Job '{name}' doesn't exist"


def unknown_iteration(job: str, it: int, span: Optional[range]) -> str:
    has = f"it has iterations {span.start}..{span.stop - 1}" if span else "it has no iterations"
    return f"Unknown iteration {it} for job {job} ({has})"
