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
    "Manager": "hpilot.governor.api.manager",
    "LocalManager": "hpilot.governor.api.manager",
    "Jobs": "hpilot.governor.api.jobs",
    "JobInfo": "hpilot.governor.api.jobs",
    "QCGPJMAError": "hpilot.governor.api.jobs",
    "HPilotError": "hpilot.governor.api.jobs",
    "InternalError": "hpilot.governor.api.jobs",
    "InvalidJobDescriptionError": "hpilot.governor.api.jobs",
    "JobNotDefinedError": "hpilot.governor.api.jobs",
    "ConnectionError": "hpilot.governor.api.jobs",
    "WrongArgumentsError": "hpilot.governor.api.jobs",
    "FileError": "hpilot.governor.api.jobs",
    "ServiceError": "hpilot.governor.api.jobs",
    "TimeoutElapsed": "hpilot.governor.api.jobs",
    "Executor": "hpilot.governor.api.executor",
    "QCGPJExecutor": "hpilot.governor.api.executor",
    "HPilotFuture": "hpilot.governor.api.executor",
    "TaskFailedError": "hpilot.governor.api.executor",
    "BasicTemplate": "hpilot.governor.api.executor",
    "resume_plan": "hpilot.governor.service.resume",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hpilot.governor' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
