"""An Executor in the style of ``concurrent.futures``, over a local hpilot service.

``submit(template, *dicts, **kwargs)`` is QCG-PilotJob's template submission
(manual ch. 11): the template is a callable returning a description with
``${name}`` placeholders and a dict of defaults; ``kwargs`` override the dicts,
which override the defaults.  ``submit("cmd ...", numCores=2)`` is a shortcut for
one shell command.  The futures are real ``concurrent.futures.Future`` s, so
``concurrent.futures.wait`` and ``as_completed`` work on them.

A watcher thread with its own sockets (ZeroMQ sockets are not shared between
threads) listens to the service's events and completes the futures.
"""

from __future__ import annotations

import ast
import concurrent.futures
import contextlib
import json
import string
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import zmq
from hpilot.governor.api.jobs import InvalidJobDescriptionError, Jobs
from hpilot.governor.api.manager import FINAL, WELCOME, LocalManager, Manager, parse_event

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


class HPilotFuture(concurrent.futures.Future):
    """The jobs of one submit; the result is ``{job name: final state}``."""

    def __init__(self, names: List[str], executor: Executor) -> None:
        super().__init__()
        self.names = names
        self._executor = executor
        self._states: Dict[str, str] = {}

    def running(self) -> bool:
        return not self.done() and any(s == "EXECUTING" for s in self._states.values())

    def cancel(self) -> bool:
        """Cancels the jobs in the service too (queued ones never start, running ones are killed)."""
        if self.done():
            return False
        self._executor._cancel_jobs(self.names)
        return super().cancel()

    def _update(self, job: str, state: str) -> None:
        self._states[job] = state
        if all(self._states.get(n) in FINAL for n in self.names) and not self.done():
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # canceled meanwhile
                self.set_result({n: self._states[n] for n in self.names})


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
            for n in names:
                self._futures[n] = future
                if n in self._finals:  # it finished before we registered it
                    future._update(n, self._finals[n])
        return future

    def _cancel_jobs(self, names: List[str]) -> None:
        with self._lock:
            self._manager.cancel(names)

    def _watch(self) -> None:
        sub: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"job")
        sub.setsockopt(zmq.SUBSCRIBE, WELCOME)
        assert self._manager.pub_address, "the service publishes no events"
        sub.connect(self._manager.pub_address)
        try:
            while not self._stop.is_set():
                if not sub.poll(200):
                    continue
                frames = sub.recv_multipart()
                if frames[0] == WELCOME:
                    self._ready.set()
                    continue
                ev = parse_event(frames)
                if ev is None or ev["event"] != "job":
                    continue
                with self._lock:
                    if ev["state"] in FINAL:
                        self._finals[ev["job"]] = ev["state"]
                    future = self._futures.get(ev["job"])
                    if future is not None:
                        future._update(ev["job"], ev["state"])
        finally:
            sub.close(0)

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


QCGPJExecutor = Executor
