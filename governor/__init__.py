"""hpilot's top layer: jobs, dependencies, the service, and the Python API.

The API names are QCG-PilotJob's (``LocalManager``, ``Manager``, ``Jobs``,
``JobInfo`` and its exceptions) plus an Executor in the style of
``concurrent.futures``.  They are loaded on first use so that the command line
does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Manager": "hpilot.governor.manager",
    "LocalManager": "hpilot.governor.manager",
    "Jobs": "hpilot.governor.jobs",
    "JobInfo": "hpilot.governor.jobs",
    "QCGPJMAError": "hpilot.governor.jobs",
    "HPilotError": "hpilot.governor.jobs",
    "InternalError": "hpilot.governor.jobs",
    "InvalidJobDescriptionError": "hpilot.governor.jobs",
    "JobNotDefinedError": "hpilot.governor.jobs",
    "ConnectionError": "hpilot.governor.jobs",
    "WrongArgumentsError": "hpilot.governor.jobs",
    "FileError": "hpilot.governor.jobs",
    "ServiceError": "hpilot.governor.jobs",
    "TimeoutElapsed": "hpilot.governor.jobs",
    "Executor": "hpilot.governor.executor",
    "QCGPJExecutor": "hpilot.governor.executor",
    "HPilotFuture": "hpilot.governor.executor",
    "BasicTemplate": "hpilot.governor.executor",
    "resume_plan": "hpilot.governor.restore",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hpilot.governor' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
