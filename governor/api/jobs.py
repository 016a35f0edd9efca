"""Client-side job groups and parsed job information (QCG-PilotJob's ``Jobs``, ``JobInfo``).

``Jobs.add`` takes the simple format (``exec``, ``args``, ``numCores`` ... at the
top level), ``Jobs.add_std`` the full submit format; both are checked with the
service's own parser, so a bad description fails here, naming the field, before
anything is sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Dict, List, Optional

from hpilot.governor.core.jobspec import parse_job


class QCGPJMAError(Exception):
    """Base of the API's errors (QCG-PilotJob's name, kept for existing code)."""


HPilotError = QCGPJMAError


class InternalError(QCGPJMAError):
    pass


class InvalidJobDescriptionError(QCGPJMAError):
    pass


class JobNotDefinedError(QCGPJMAError):
    pass


class ConnectionError(QCGPJMAError):  # noqa: A001 - QCG-PilotJob's public name
    pass


class WrongArgumentsError(QCGPJMAError):
    pass


class FileError(QCGPJMAError):
    pass


class ServiceError(QCGPJMAError):
    pass


class TimeoutElapsed(Exception):
    pass


_SIMPLE_EXEC = ("exec", "script", "args", "env", "stdin", "stdout", "stderr", "wd", "modules", "venv",
                "model", "model_opts")
_SIMPLE_RES = ("numCores", "numNodes", "nodeCrs", "wt")
_SIMPLE_KEYS = ("name", "iteration", "after") + _SIMPLE_EXEC + _SIMPLE_RES


def simple_to_std(attrs: Dict[str, Any]) -> Dict[str, Any]:
    """The simple format of ``Jobs.add`` -> the submit format."""
    unknown = [k for k in attrs if k not in _SIMPLE_KEYS]
    if unknown:
        raise InvalidJobDescriptionError(f"unknown attribute(s) {', '.join(unknown)}; known: {', '.join(_SIMPLE_KEYS)}")
    job: Dict[str, Any] = {"name": attrs.get("name") or f"job-{uuid.uuid4().hex[:10]}"}
    execution = {k: attrs[k] for k in _SIMPLE_EXEC if attrs.get(k) is not None}
    if isinstance(execution.get("args"), str):
        execution["args"] = [execution["args"]]
    if isinstance(execution.get("modules"), str):
        execution["modules"] = [execution["modules"]]
    job["execution"] = execution
    resources = {k: attrs[k] for k in _SIMPLE_RES if attrs.get(k) is not None}
    for key in ("numCores", "numNodes"):
        if isinstance(resources.get(key), int) and not isinstance(resources[key], bool):
            resources[key] = {"exact": resources[key]}
    if resources:
        job["resources"] = resources
    it = attrs.get("iteration")
    if it is not None:
        job["iteration"] = {"stop": it} if isinstance(it, int) else {"values": it} if isinstance(it, list) else it
    after = attrs.get("after")
    if after:
        job["dependencies"] = {"after": [after] if isinstance(after, str) else after}
    return job


class Jobs:
    """An ordered group of job descriptions to submit together (all or nothing)."""

    def __init__(self) -> None:
        self._list: Dict[str, Dict[str, Any]] = {}

    def _check_and_add(self, job: Dict[str, Any]) -> Jobs:
        spec, errors = parse_job(job)
        if errors:
            raise InvalidJobDescriptionError("; ".join(str(e) for e in errors))
        assert spec is not None
        if spec.name in self._list:
            raise InvalidJobDescriptionError(f"job '{spec.name}': name: not unique in this group")
        self._list[spec.name] = job
        return self

    def add(self, job_attrs: Optional[Dict[str, Any]] = None, **kw_attrs: Any) -> Jobs:
        return self._check_and_add(simple_to_std({**(job_attrs or {}), **kw_attrs}))

    def add_std(self, job_attrs: Optional[Dict[str, Any]] = None, **kw_attrs: Any) -> Jobs:
        return self._check_and_add(json.loads(json.dumps({**(job_attrs or {}), **kw_attrs})))

    def remove(self, name: str) -> None:
        if name not in self._list:
            raise JobNotDefinedError(f"job '{name}' is not in this group")
        del self._list[name]

    def clear(self) -> None:
        self._list.clear()

    def job_names(self) -> List[str]:
        return list(self._list)

    def ordered_job_names(self) -> List[str]:
        return list(self._list)

    def jobs(self) -> List[Dict[str, Any]]:
        return list(self._list.values())

    def ordered_jobs(self) -> List[Dict[str, Any]]:
        return list(self._list.values())

    def __len__(self) -> int:
        return len(self._list)

    def load_from_file(self, file_path: str) -> Jobs:
        """A list of jobs, a submit request, or a request file (its submits)."""
        try:
            with open(file_path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise FileError(f"{file_path}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise InvalidJobDescriptionError(f"{file_path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
        for job in _jobs_in(data):
            self.add_std(job)
        return self

    def save_to_file(self, file_path: str) -> None:
        try:
            with open(file_path, "w", encoding="utf-8") as f:
                json.dump([{"request": "submit", "jobs": self.ordered_jobs()}], f, indent=2)
        except OSError as e:
            raise FileError(f"{file_path}: {e.strerror}") from None


def _jobs_in(data: Any) -> List[Dict[str, Any]]:
    if isinstance(data, dict):
        data = data.get("jobs", [data]) if data.get("request", "submit") == "submit" else []
    if not isinstance(data, list):
        raise InvalidJobDescriptionError("expected a list of jobs or of submit requests")
    jobs: List[Dict[str, Any]] = []
    for item in data:
        if isinstance(item, dict) and "request" in item:
            if item["request"] == "submit":
                jobs.extend(item.get("jobs", []))
        else:
            jobs.append(item)
    return jobs


_ALLOC = re.compile(r"([^,\[]+)\[([0-9:]*)\]")


@dataclass
class JobInfo:
    """Parsed ``jobInfo`` data."""

    name: str
    status: str
    nodes: Optional[Dict[str, List[int]]] = None
    total_cores: Optional[int] = None
    wdir: Optional[str] = None
    time: Optional[timedelta] = None
    iteration: Optional[int] = None
    iterations: Optional[Dict[str, Any]] = None
    childs: List[JobInfo] = field(default_factory=list)
    history: List[str] = field(default_factory=list)
    messages: Optional[str] = None
    exit_code: Optional[int] = None

    @staticmethod
    def from_job(job_data: Dict[str, Any]) -> JobInfo:
        info = JobInfo(name=job_data.get("jobName", ""), status=job_data.get("status", ""))
        info.iterations = job_data.get("iterations")
        info.messages = job_data.get("messages")
        info.history = [h for h in job_data.get("history", "").split("\n") if h]
        _runtime_into(info, job_data.get("runtime") or {})
        info.childs = [JobInfo.from_child(info.name, c) for c in job_data.get("childs", [])]
        return info

    @staticmethod
    def from_child(job_name: str, child_data: Dict[str, Any]) -> JobInfo:
        info = JobInfo(name=f"{job_name}:{child_data.get('iteration')}", status=child_data.get("state", ""),
                       iteration=child_data.get("iteration"))
        info.history = [h for h in child_data.get("history", "").split("\n") if h]
        _runtime_into(info, child_data.get("runtime") or {})
        return info


def _runtime_into(info: JobInfo, rt: Dict[str, Any]) -> None:
    alloc = rt.get("allocation")
    if alloc:
        info.nodes = {m.group(1): [int(c) for c in m.group(2).split(":") if c] for m in _ALLOC.finditer(alloc)}
        info.total_cores = sum(len(c) for c in info.nodes.values())
    info.wdir = rt.get("wd")
    if rt.get("rtime"):
        info.time = _parse_timedelta(rt["rtime"])
    if rt.get("exit_code") is not None:
        with contextlib.suppress(ValueError):
            info.exit_code = int(rt["exit_code"])


def _parse_timedelta(text: str) -> Optional[timedelta]:
    m = re.match(r"(?:(\d+) days?, )?(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if not m:
        return None
    days, h, mi, s = m.groups()
    return timedelta(days=int(days or 0), hours=int(h), minutes=int(mi), seconds=float(s))
