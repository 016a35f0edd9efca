"""An Executor in the style of ``concurrent.futures``, over a local hpilot service.

``submit(template, *dicts, **kwargs)`` is QCG-PilotJob's template submission
(manual ch. 11): the template is a callable returning a description with
``${name}`` placeholders and a dict of defaults; ``kwargs`` override the dicts,
which override the defaults.  ``submit("cmd ...", numCores=2)`` is a shortcut for
one shell command.  The futures are real ``concurrent.futures.Future`` s, so
``concurrent.futures.wait`` and ``as_completed`` work on them.

A watcher thread with its own sockets (ZeroMQ sockets are not shared between
threads) listens to the service's events and completes the futures.

A future whose jobs all SUCCEED has the result ``{job name: 'SUCCEED', ...}``.  One whose job
failed (or was OMITTED, or CANCELED in the service) has a :class:`TaskFailedError` as its
exception, as a ``concurrent.futures`` user expects: ``result()`` raises it, ``exception()``
returns it.  It carries the job, the iteration, the exit code, the reason and the task's
last stderr lines; QCG-PilotJob's status dict stays available as ``future.statuses()`` and
as the error's ``statuses``.
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import json
import logging
import string
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from hpilot.governor.api.jobs import InvalidJobDescriptionError, Jobs, QCGPJMAError
from hpilot.governor.api.manager import FINAL, LocalManager, Manager, parse_event

log = logging.getLogger("hpilot.api")
Template = Callable[[], Tuple[str, Dict[str, Any]]]


class BasicTemplate:
    """QCG-PilotJob's basic template: ``name`` and ``exec`` (``args``, ``stdout``, ``stderr``)."""

    @staticmethod
    def template() -> Tuple[str, Dict[str, Any]]:
        template = """
        {
            'name': '${name}',
            'execution': {
                'exec': '${exec}',
                'args': ${args},
                'stdout': '${stdout}',
                'stderr': '${stderr}'
            }
        }
        """
        return template, {"args": [], "stdout": "stdout", "stderr": "stderr"}


class TaskFailedError(QCGPJMAError):
    """A job of an Executor future did not succeed: which, where, and why.

    ``job``, ``iteration`` (None for a job without iterations, or when none ran), ``state``
    (FAILED, OMITTED or CANCELED), ``exit_code`` (None when it never ran), ``reason`` (why it
    did not end by itself, or why it never ran), ``stderr`` (its last stderr lines, when its
    output was streamed) and ``statuses`` (the future's ``{job: state}``, QCG-PilotJob's result).
    """

    def __init__(self, job: str, state: str, statuses: Dict[str, str], iteration: Optional[int] = None,
                 exit_code: Optional[int] = None, reason: Optional[str] = None, stderr: Optional[str] = None) -> None:
        self.job, self.state, self.statuses = job, state, statuses
        self.iteration, self.exit_code, self.reason, self.stderr = iteration, exit_code, reason, stderr
        task = job if iteration is None else f"{job}:{iteration}"
        why = [f"exit code {exit_code}"] if exit_code is not None else []
        if reason:
            why.append(reason)
        last = (stderr or "").strip().rpartition("\n")[2].strip()
        if last:
            why.append(last)
        super().__init__(f"{task} {state}" + (": " + "; ".join(why) if why else ""))

    @classmethod
    def from_info(cls, job: str, statuses: Dict[str, str], data: Dict[str, Any]) -> TaskFailedError:
        """From the job's ``jobInfo`` data: its first failed iteration, else its first message."""
        state = str(data.get("status", statuses.get(job, "FAILED")))
        failures = data.get("failures") or []
        if failures:
            f = failures[0]
            return cls(job, state, statuses, f.get("iteration"), f.get("exit_code"), f.get("reason"), f.get("stderr"))
        code = (data.get("runtime") or {}).get("exit_code")
        message = str(data.get("messages") or "").split("\n")[0] or None
        return cls(job, state, statuses, None, int(code) if code not in (None, "", "0") else None, message)


class HPilotFuture(concurrent.futures.Future):
    """The jobs of one submit.  The result is ``{job name: 'SUCCEED'}`` when every job succeeded;
    otherwise ``result()`` raises :class:`TaskFailedError` (``exception()`` returns it)."""

    def __init__(self, names: List[str], executor: Executor) -> None:
        super().__init__()
        self.names = names
        self._executor = executor
        self._states: Dict[str, str] = {}
        self._final = threading.Event()

    def statuses(self, timeout: Optional[float] = None) -> Dict[str, str]:
        """QCG-PilotJob's result: ``{job name: final state}`` once every job ended, failed or not
        (never raises for a failed job; ``TimeoutError`` if they do not end within ``timeout``)."""
        if not self._final.wait(timeout):
            raise concurrent.futures.TimeoutError(f"jobs {', '.join(self.names)} not finished after {timeout}s")
        return {n: self._states[n] for n in self.names}

    def running(self) -> bool:
        return not self.done() and any(s == "EXECUTING" for s in self._states.values())

    def cancel(self) -> bool:
        """Cancels the jobs in the service too (queued ones never start, running ones are killed)."""
        if self.done():
            return False
        self._executor._cancel_jobs(self.names)
        return super().cancel()

    def _update(self, job: str, state: str) -> bool:
        """Record a job's state; True when this made every job final (complete it then)."""
        self._states[job] = state
        if self._final.is_set() or not all(self._states.get(n) in FINAL for n in self.names):
            return False
        self._final.set()
        return True

    def _complete(self, info: Callable[[str], Dict[str, Any]]) -> None:
        """Set the result, or the failure of the first job that did not succeed (``info`` asks
        the service for that job's jobInfo data)."""
        statuses = {n: self._states[n] for n in self.names}
        failed = next((n for n in self.names if statuses[n] != "SUCCEED"), None)
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # canceled meanwhile
            if failed is None:
                self.set_result(statuses)
                return
            try:
                data = info(failed)
            except QCGPJMAError as e:  # the details are a bonus: the failure itself is known
                data = {"status": statuses[failed], "messages": f"(no details from the service: {e})"}
            self.set_exception(TaskFailedError.from_info(failed, statuses, data))


def render(template: Union[Template, str], *args: Dict[str, Any], **kwargs: Any) -> List[Dict[str, Any]]:
    """A template and its parameters -> job descriptions (submit format)."""
    if callable(template):
        text, defaults = template()
        values: Dict[str, Any] = dict(defaults)
        for d in args:
            values.update(d)
        values.update(kwargs)
        try:
            filled = string.Template(text).substitute({k: v if isinstance(v, str) else repr(v)
                                                       for k, v in values.items()})
        except KeyError as e:
            raise InvalidJobDescriptionError(f"template parameter {e} has no value") from None
        try:
            desc = ast.literal_eval(filled.strip())
        except (ValueError, SyntaxError):
            try:
                desc = json.loads(filled)
            except ValueError as e:
                raise InvalidJobDescriptionError(f"the filled template is not a job description: {e}") from None
        jobs = desc if isinstance(desc, list) else [desc]
    else:
        name = kwargs.pop("name", None) or f"task-{uuid.uuid4().hex[:10]}"
        jobs = Jobs().add(**kwargs, name=name, script=template).ordered_jobs()
    for j in jobs:
        if isinstance(j, dict) and not j.get("name"):
            j["name"] = f"task-{uuid.uuid4().hex[:10]}"
    return jobs


class Executor:
    """Starts a local service and runs submitted templates or commands on it."""

    def __init__(self, wd: str = ".", resources: Optional[str] = None, reserve_core: bool = False,
                 enable_rt_stats: bool = False, wrapper_rt_stats: Optional[str] = None,
                 log_level: str = "info", *other_args: str) -> None:
        args = ["--wd", wd, "--log", log_level]
        if resources:
            args += ["--nodes", resources]
        if reserve_core:
            args.append("--system-core")
        if enable_rt_stats:
            args.append("--enable-rt-stats")
        if wrapper_rt_stats:
            args += ["--wrapper-rt-stats", wrapper_rt_stats]
        self._manager: Manager = LocalManager(args + list(other_args))
        self._lock = threading.Lock()
        self._futures: Dict[str, HPilotFuture] = {}
        self._finals: Dict[str, str] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="hpilot-executor", daemon=True)
        self._watcher.start()
        self._ready.wait(10)

    @property
    def manager(self) -> Manager:
        return self._manager

    def submit(self, fn: Union[Template, str], *args: Dict[str, Any], **kwargs: Any) -> HPilotFuture:
        jobs = render(fn, *args, **kwargs)
        with self._lock:
            names = self._manager.submit(jobs)
            future = HPilotFuture(names, self)
            complete = False
            for n in names:
                self._futures[n] = future
                if n in self._finals:  # it finished before we registered it
                    complete = future._update(n, self._finals[n]) or complete
            if complete:  # this thread's manager, under the lock that guards its socket
                future._complete(lambda name: _info_data(self._manager, name))
        return future

    def _cancel_jobs(self, names: List[str]) -> None:
        with self._lock:
            self._manager.cancel(names)

    def _watch(self) -> None:
        asker: Optional[Manager] = None  # the watcher's own requests (a REQ socket is one thread's)

        def info(name: str) -> Dict[str, Any]:
            nonlocal asker
            if asker is None:
                asker = Manager(self._manager.address, {"subscribe": False, "request_timeout": 30},
                                keys=self._manager.keys)
            return _info_data(asker, name)

        assert self._manager.pub_address, "the service publishes no events"
        sub = self._manager.event_socket(self._manager.pub_address, 10)
        self._ready.set()
        while sub is None and not self._stop.is_set():  # the futures complete on events only
            log.warning("no event welcome from %s: subscribing again", self._manager.pub_address)
            sub = self._manager.event_socket(self._manager.pub_address, 10)
        if sub is None:
            return
        try:
            while not self._stop.is_set():
                if not sub.poll(200):
                    continue
                frames = sub.recv_multipart()
                ev = parse_event(frames)
                if ev is None or ev["event"] != "job":
                    continue
                with self._lock:
                    if ev["state"] in FINAL:
                        self._finals[ev["job"]] = ev["state"]
                    future = self._futures.get(ev["job"])
                    complete = future is not None and future._update(ev["job"], ev["state"])
                if complete and future is not None:
                    future._complete(info)
        finally:
            sub.close(0)
            if asker is not None:
                asker.cleanup()

    def shutdown(self, wait: bool = True) -> None:
        if wait:
            concurrent.futures.wait(set(self._futures.values()))
        self._stop.set()
        self._watcher.join(5)
        self._manager.finish()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown(wait=exc[0] is None)


def _info_data(manager: Manager, name: str) -> Dict[str, Any]:
    entry = manager.info([name]).get("jobs", {}).get(name, {})
    data = entry.get("data") if isinstance(entry, dict) else None
    return data if isinstance(data, dict) else {}


QCGPJExecutor = Executor
