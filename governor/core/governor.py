"""The governor's pure core: jobs, dependencies, dispatch, and the requests.

``handle(event) -> actions``.  Events are client requests and partition reports,
each stamped with the time by the shell; actions are replies, messages to
partitions, finished jobs (for the report) and the end of the service.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from hpilot.governor.core import batches, control, interrupt, overview, qcg, queries, records, replay, reruns
from hpilot.governor.core.dag import Dag, Edge
from hpilot.governor.core.decisions import Decision, Grant, Impossible, Requeue, Tell
from hpilot.governor.core.each import EachWaits
from hpilot.governor.core.events import (
    Action,
    ClientRequest,
    Event,
    FenceLifted,
    FinishService,
    FromPart,
    Interrupt,
    JobDone,
    PartitionDraining,
    PartitionGone,
    PartitionJoined,
    Record,
    Reply,
    SendToPartition,
    Settled,
    StateEvent,
)
from hpilot.governor.core.host import Host, NoHost
from hpilot.governor.core.jobspec import FieldError, JobSpec, parse_job
from hpilot.governor.core.registry import Drop, Failure, JobRecord, Registry
from hpilot.governor.core.routing import Router
from hpilot.governor.core.runs import IterRun
from hpilot.governor.core.states import JobState
from hpilot.governor.core.validate import check_submit
from hpilot.partition.messages import (
    FromPartition,
    IterationFinished,
    IterationsDropped,
    IterationsRan,
    IterationsStarted,
    IterationsSucceeded,
    IterationStarted,
    NodeStatus,
    Reserved,
    Shutdown,
    TaskSpec,
    Work,
)
from hpilot.partition.models import LOCAL_MODELS
from hpilot.partition.resources import Node, ResourceSet
from hpilot.partition.spec import Execution

log = logging.getLogger("hpilot.governor")

OK, ERROR = qcg.OK, qcg.ERROR
REPLAYED = replay.EVENTS
MAX_MESSAGES = 20  # per job: a sweep of 10^6 failing iterations must not keep 10^6 strings



@dataclass(frozen=True)
class GovernorConfig:
    root_wd: str
    sname: str = "local"
    models: Sequence[str] = LOCAL_MODELS
    address: Optional[str] = None
    pub_address: Optional[str] = None
    started: float = 0.0  # the service's start, given by the shell (the core reads no clock)
    # The whole allocation when it is known at start (a single manager's resources, or
    # the nodes a governor splits into its own partitions): a job larger than it is
    # refused at submit.  None (partitions join from elsewhere): judged once they have.
    allocation: Optional[ResourceSet] = None
    instance_id: Optional[str] = None  # QCG-PilotJob's InstanceId (the run's id)


@dataclass
class PartitionView:
    name: str
    resources: ResourceSet
    used_cores: int = 0
    local: bool = False  # the in-process partition of a single manager (not named in answers)
    down: Dict[str, str] = dataclasses.field(default_factory=dict)  # node -> why it is out of service

    def node_status(self, msg: NodeStatus) -> None:
        if msg.up:
            if self.down.pop(msg.node, None) is not None:
                log.info("node %s is back in service", msg.node)
        else:
            self.down[msg.node] = msg.reason
            where = "" if self.local else f" (partition {self.name})"
            log.warning("node %s%s is out of service: %s", msg.node, where, msg.reason)


def response(code: int, message: str = "", data: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"code": code}
    if message:
        out["message"] = message
    if data is not None:
        out["data"] = data
    return out


class GovernorCore:
    def __init__(self, cfg: GovernorConfig, host: Optional[Host] = None) -> None:
        self.cfg = cfg
        self.host: Host = host or NoHost()
        self.partitions: Dict[str, PartitionView] = {}
        self.registry = Registry()
        self.dag = Dag()
        self.rcnt = 0
        self.started = cfg.started
        self.finish_when_done = False
        self.finishing = False
        self.emit_events = False  # set by the shell when there is a publisher
        self.journaling = False  # set by the shell when there is a journal
        self.active = 0  # jobs not yet in a final state
        # Dependants waiting on a whole job / on one iteration. They hold the records,
        # not names: a name can be removed and reused while an old record still waits.
        self._waiting_whole: Dict[str, List[JobRecord]] = {}
        self._waiting_it: Dict[Tuple[str, int], List[JobRecord]] = {}
        self.each = EachWaits()  # per-iteration dependencies ("after": ["a:${it}"])
        # iterations canceled one by one, met while a journal is replayed (applied at its end)
        self.replay_canceled_its: Dict[int, Tuple[JobRecord, Set[int]]] = {}
        self._busy = False  # some job was active since the last "no jobs" event
        # Every iteration goes to a partition through the Router: the one in-process
        # partition of a single manager, or partitions that register over the network.
        self.router = Router()
        self.expect_partitions = 0  # partitions the governor started itself
        self.interrupted: Optional[str] = None  # why the run stopped resumably (interrupt.py)
        self.replay_interrupted = 0  # iterations an earlier run's end interrupted (met in a replay)

    # ---- the one entry point ----

    def handle(self, ev: Event) -> List[Action]:
        out: List[Action] = []
        if isinstance(ev, FromPart):
            self._from_partition(ev.partition, ev.message, out)
        elif isinstance(ev, ClientRequest):
            resp = self._request(ev.payload, ev.now, out)
            out.insert(0, Reply(ev.reply_to, resp))
        elif isinstance(ev, PartitionJoined):
            self._joined(ev, out)
        elif isinstance(ev, PartitionGone):
            self.partitions.pop(ev.name, None)
            self.apply(self.router.leave(ev), ev.now, out)
        elif isinstance(ev, PartitionDraining):
            self.router.draining(ev.name)
        elif isinstance(ev, Settled):
            self.apply(self.router.settle(0.0), 0.0, out)
        elif isinstance(ev, Interrupt):
            interrupt.interrupt(self, ev, out)
        elif isinstance(ev, FenceLifted):
            self.apply(self.router.unfence(ev.name, ev.now), ev.now, out)
        elif isinstance(ev, REPLAYED):
            replay.apply(self, ev, out)
        else:
            raise TypeError(f"governor: unknown event {ev!r}")
        self._check_done(out)
        return out

    def _joined(self, ev: PartitionJoined, out: List[Action]) -> None:
        rs = ResourceSet(tuple(Node(n, tuple(range(c))) for n, c in ev.nodes), False, "partition")
        self.partitions[ev.name] = PartitionView(ev.name, rs, local=ev.credit is not None)
        if not self.expect_partitions:
            self.router.settled = True
        self.apply(self.router.join(ev), ev.now, out)

    def apply(self, decisions: List[Decision], now: float, out: List[Action]) -> None:
        """Carry out the Router's decisions: every state change is made here, in the core."""
        for d in decisions:
            if isinstance(d, Grant):
                out.append(SendToPartition(d.partition, Work(d.rec.task, d.iterations, now)))
            elif isinstance(d, Tell):
                out.append(SendToPartition(d.partition, d.message))
            elif isinstance(d, Impossible):  # also iterations a lost partition had started
                self._requeue(d.rec, d.iterations, d.reason)
                self._drop(d.rec, d.iterations, d.state, d.reason, now, out)
            elif isinstance(d, Requeue):
                self._requeue(d.rec, d.iterations, d.reason)

    def _requeue(self, rec: JobRecord, its: Sequence[int], reason: str) -> None:
        for it in its:
            state = rec.it_state(it)
            if not state.is_final and state is not JobState.QUEUED:
                rec.set_it_state(it, JobState.QUEUED)
                run = rec.runs.get(it)
                if run is not None:
                    run.reason = reason

    def _check_done(self, out: List[Action]) -> None:
        if self.emit_events:  # QCG-PilotJob's NOJ: what its client's wait4all waits for
            if self.active:
                self._busy = True
            elif self._busy:
                self._busy = False
                out.append(StateEvent({"event": "nojobs"}))
        if self.finish_when_done and self.active == 0 and not self.finishing:
            self.finishing = True
            out.append(FinishService("all jobs finished"))

    # ---- requests ----

    def _request(self, payload: Any, now: float, out: List[Action]) -> Dict[str, Any]:
        if not isinstance(payload, dict) or not payload.get("request"):
            what = ("unknown request: no 'request' field" if isinstance(payload, dict)
                    else f"a request must be a JSON object, not {type(payload).__name__}")
            return response(ERROR, qcg.invalid(f"Invalid request ({what})"))
        kind = payload.get("request")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            known = ", ".join(sorted(_HANDLERS))
            return response(ERROR, qcg.invalid(f"Unknown request name: {kind} (unknown request {kind!r}; known "
                                               f"requests: {known})"))
        return handler(self, payload, now, out)

    def _req_submit(self, payload: Dict[str, Any], now: float, out: List[Action]) -> Dict[str, Any]:
        raw_jobs = payload.get("jobs")
        if not isinstance(raw_jobs, list) or not raw_jobs:
            return response(ERROR, qcg.invalid(f"{qcg.MISSING_JOBS} ('jobs' must be a non-empty list of job "
                                               "descriptions)"))
        if self.finishing:
            return response(ERROR, "processing stopped: the service is finishing and accepts no more jobs")
        self.rcnt += 1  # as QCG-PilotJob: every submit request counts, accepted or not
        specs: List[JobSpec] = []
        errors: List[FieldError] = []
        for i, raw in enumerate(raw_jobs):
            spec, errs = parse_job(raw, i)
            errors.extend(errs)
            if spec is not None:
                specs.append(spec)
        if not errors:
            errors = self._check(specs)
        if errors:
            lines = "\n".join(f"  {e}" for e in errors)
            bad = sorted({e.job for e in errors})
            return response(ERROR, f"submit refused, no job accepted ({len(errors)} problem(s) in "
                                   f"{', '.join(bad)}):\n{lines}",
                            {"errors": [dataclasses.asdict(e) for e in errors]})
        values = self.submit_values(now)
        if self.journaling:
            out.append(Record(records.json_record({"t": "submit", "time": now, "values": values,
                                                   "jobs": [dict(s.source) for s in specs]})))
        # Register the whole submit before linking: a job may depend on one listed after it.
        registered = [self.register(spec, now, out, values) for spec in specs]
        for rec in registered:
            self.link(rec, now, out)
        names = [s.name for s in specs]
        return response(OK, f"{len(names)} jobs submitted", {"submitted": len(names), "jobs": names})

    def _check(self, specs: List[JobSpec]) -> List[FieldError]:
        def known(name: str):
            rec = self.registry.get(name)
            if rec is None:
                return None
            return rec.iterations() if rec.task.iterative else ()

        errors = check_submit(specs, known, self.cfg.root_wd, self.cfg.allocation, self.cfg.models, self.host)
        if errors:
            return errors
        edges: List[Edge] = [(d.job, s.name, d.iteration) for s in specs for d in s.after]
        edges += [(name, s.name, None) for s in specs for name in s.each]
        cycle = self.dag.find_cycle(edges) if edges else None
        if cycle:
            return [FieldError(cycle[0], "dependencies.after", f"dependency cycle: {' -> '.join(cycle)}")]
        return []

    def register(self, spec: JobSpec, now: float, out: List[Action], values: Dict[str, str]) -> JobRecord:
        rec = JobRecord(spec, self._task_spec(spec, values), now, self.registry.next_order())
        self.registry.add(rec)
        if self.emit_events:
            out.append(StateEvent({"event": "job", "job": rec.name, "state": "QUEUED", "time": now}))
        self.active += 1
        if spec.after or spec.each:
            self.dag.add(dag_edges(spec))
        return rec

    def link(self, rec: JobRecord, now: float, out: List[Action]) -> None:
        spec = rec.spec
        broken = None
        for dep in spec.after:
            state = self._dep_state(dep.job, dep.iteration)
            if state is JobState.SUCCEED:
                continue
            if state.is_final:
                broken = f"dependency {dep} ended {state.value}"
                continue
            rec.unmet += 1
            if dep.iteration is None:
                self._waiting_whole.setdefault(dep.job, []).append(rec)
            else:
                self._waiting_it.setdefault((dep.job, dep.iteration), []).append(rec)
        if broken:
            self._omit([rec], broken, now, out)
            return
        if spec.each:
            self.each.link(self, rec, now, out)
        if rec.unmet == 0 and not rec.state.is_final:
            self._dispatch(rec, out)

    def submit_values(self, now: float) -> Dict[str, str]:
        """The submit-time variables (journaled, so that a resume fills them the same way)."""
        y, mo, d, h, mi, s = self.host.local_time(now)
        return {
            "rcnt": str(self.rcnt),
            "uniq": self.host.unique_id(),  # one per submit request, as QCG-PilotJob
            "sname": self.cfg.sname,
            "date": f"{y:04d}-{mo:02d}-{d:02d}",
            "time": f"{h:02d}:{mi:02d}:{s:02d}",
            "dateTime": f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}",
        }

    def _task_spec(self, spec: JobSpec, values: Dict[str, str]) -> TaskSpec:
        ex = _fill_submit_vars(spec.execution, {**values, "jname": spec.name})
        it = spec.iteration
        return TaskSpec(
            job=spec.name, execution=ex, resources=spec.resources, iterative=it is not None,
            it_start=it.start if it else 0, it_count=it.count if it else 1,
            it_values=it.values if it else None,
        )

    def _dep_state(self, job: str, it: Optional[int]) -> JobState:
        rec = self.registry.get(job)
        assert rec is not None, f"dependency {job} vanished"
        return rec.state if it is None else rec.it_state(it)

    def _dispatch(self, rec: JobRecord, out: List[Action]) -> None:
        rec.dispatched = True
        its = rec.pending()
        if rec.it_unmet:  # iterations still waiting for theirs ("a:${it}") go when it is done
            its = tuple(it for it in its if it not in rec.it_unmet)
        self.dispatch_its(rec, its, out)

    def dispatch_its(self, rec: JobRecord, its: Sequence[int], out: List[Action]) -> None:
        """Send these iterations of a dispatched job to run."""
        if len(its):
            self.apply(self.router.add(rec, its, rec.submitted), rec.submitted, out)

    def _cancel(self, rec: JobRecord, now: float, out: List[Action]) -> None:
        rec.canceled = True
        if self.journaling:
            out.append(Record(records.json_record({"t": "cancel", "time": now, "jobs": [rec.name]})))
        reason = "canceled by the user"
        held = self.each.take_held(rec)  # iterations waiting for theirs were never sent
        if held:
            self._drop(rec, held, JobState.CANCELED, reason, now, out)
        if rec.dispatched:
            self.apply(self.router.cancel(rec, reason, now), now, out)
        else:
            self._drop(rec, rec.iterations(), JobState.CANCELED, reason, now, out)
        self._break_dependants(rec.name, f"dependency {rec.name} was canceled", now, out)

    def _cancel_iteration(self, rec: JobRecord, it: int, now: float, out: List[Action]) -> None:
        """One iteration: never started if queued, killed if running.  The job then ends FAILED
        (not CANCELED), as in QCG-PilotJob: it did not do all its work, but nobody canceled it."""
        rec.partial_cancel = True
        if self.journaling:
            out.append(Record(records.json_record({"t": "cancel", "time": now, "jobs": [rec.name], "its": [it]})))
        reason = "canceled by the user"
        if not rec.dispatched or self.each.take_held(rec, (it,)):
            self._drop(rec, (it,), JobState.CANCELED, reason, now, out)
        else:
            self.apply(self.router.cancel(rec, reason, now, (it,)), now, out)

    def forget(self, rec: JobRecord) -> None:
        """Remove a job (its name may be used again)."""
        if not rec.state.is_final:  # only a replay removes one (its end was not journaled)
            self.active -= 1
        self.registry.remove(rec.name)
        self.dag.remove(rec.name)

    def _req_finish(self, payload: Dict[str, Any], now: float, out: List[Action]) -> Dict[str, Any]:
        self.finishing = True
        reason = "the service was asked to finish"
        for rec in list(self.registry):
            held = self.each.take_held(rec)
            if held:
                self._drop(rec, held, JobState.CANCELED, reason, now, out)
            if not rec.state.is_final and not rec.dispatched:
                self._drop(rec, rec.iterations(), JobState.CANCELED, reason, now, out)
        self.apply(self.router.drop_unsent(reason), now, out)
        for part in self.partitions:
            out.append(SendToPartition(part, Shutdown(reason, now)))
        out.append(FinishService("finish request"))
        return response(OK, "finishing", {"when": "0s"})  # QCG-PilotJob's client needs data here

    def _req_query(self, payload: Dict[str, Any], now: float, out: List[Action]) -> Dict[str, Any]:
        return queries.answer(self, payload, now)

    def _req_overview(self, payload: Dict[str, Any], now: float, out: List[Action]) -> Dict[str, Any]:
        return overview.answer(self, payload, now)

    # ---- partition reports ----

    def _from_partition(self, part: str, msg: FromPartition, out: List[Action]) -> None:
        view = self.partitions.get(part)
        if isinstance(msg, NodeStatus):
            if view is not None:
                view.node_status(msg)
            return
        rec = self.registry.get(msg.job)
        if rec is None or view is None:
            log.warning("report for job %s from %s dropped (unknown job or partition)", msg.job, part)
            return
        if isinstance(msg, IterationStarted):
            self._started(rec, view, msg, out)
        elif isinstance(msg, IterationFinished):
            if rec.it_state(msg.iteration).is_final:
                log.warning("%s: a second end reported by %s dropped", rec.task.task_name(msg.iteration), part)
                return
            if interrupt.ends_interrupted(self, msg):
                interrupt.killed(self, rec, view, part, msg, out)
                return
            if self.router.spanning.running:
                again = self.router.abandoned(part, rec, msg.iteration, msg.finished)
                if again is not None:  # a spanning run killed because a partition of it was lost
                    self.apply(again, msg.finished, out)
                    return
            if reruns.again(self, rec, view, part, msg, out):  # lost under it, or a failure it may retry
                return
            self._finished(rec, view, msg, out)
            ends = self.router.finished(part, rec, (msg.iteration,), msg.finished, first=msg.started)
            self.apply(ends, msg.finished, out)
        elif isinstance(msg, IterationsDropped):
            state = JobState.CANCELED if msg.canceled else JobState.FAILED
            if interrupt.ends_interrupted(self, msg):
                state = JobState.INTERRUPTED
            refused = self.router.refused(part, rec, msg.iterations, msg.reason, msg.when)
            if refused is not None:  # a partition could not set cores aside for a spanning run
                self.apply(refused, msg.when, out)
                return
            its = [it for it in msg.iterations if not rec.it_state(it).is_final]
            self._drop(rec, its, state, msg.reason, msg.when, out)
            self.apply(self.router.finished(part, rec, its, msg.when), msg.when, out)
        elif isinstance(msg, IterationsStarted):
            batches.started(self, rec, view, msg, out)
        elif isinstance(msg, IterationsSucceeded):
            batches.succeeded(self, part, rec, view, msg, out)
        elif isinstance(msg, IterationsRan):
            batches.ran(self, part, rec, view, msg, out)
        elif isinstance(msg, Reserved):
            self.apply(self.router.reserved(part, msg, msg.now), msg.now, out)

    def _started(self, rec: JobRecord, view: PartitionView, msg: IterationStarted, out: List[Action]) -> None:
        view.used_cores += msg.cores
        rec.set_it_state(msg.iteration, JobState.EXECUTING)
        rec.runs.start(msg.iteration, msg.allocation, msg.wd, msg.scheduled, msg.started, msg.pid,
                       None if view.local else view.name)
        if self.journaling:
            out.append(Record(records.started_record(rec.name, msg.iteration, msg.pid, msg.started)))
        self._iteration_event(rec, msg.iteration, JobState.EXECUTING, msg.started, out)
        if rec.state is JobState.QUEUED:
            self.set_job_state(rec, JobState.EXECUTING, msg.started, out)

    def _finished(self, rec: JobRecord, view: PartitionView, msg: IterationFinished,
                  out: List[Action]) -> None:
        started = rec.runs.finish(msg.iteration, msg.finished, msg.exit_code, msg.reason)
        if started is None:  # never started (the program could not be spawned)
            started = msg.started
            rec.runs[msg.iteration] = IterRun(msg.allocation, msg.wd, started, started, msg.finished,
                                              msg.exit_code, msg.reason)
        else:
            view.used_cores -= msg.cores
        if msg.ok:
            state = JobState.SUCCEED
        elif msg.canceled:
            state = JobState.CANCELED
        else:
            state = JobState.FAILED
            self._message(rec, f"{rec.task.task_name(msg.iteration)}: "
                               f"{msg.reason or f'exit code {msg.exit_code}'}")
            kept = rec.add_failure(Failure(msg.iteration, msg.exit_code, msg.reason, msg.stderr_tail))
            if kept and msg.stderr_tail and self.journaling:  # before its I record: a resume shows it too
                out.append(Record(records.json_record({"t": "stderr", "job": rec.name, "it": msg.iteration,
                                                       "tail": msg.stderr_tail})))
        rec.set_it_state(msg.iteration, state)
        if self.journaling:
            out.append(Record(records.finished_record(rec.name, msg.iteration, state.value, msg.exit_code,
                                                      started, msg.finished, msg.allocation, msg.wd,
                                                      msg.reason)))
        self._iteration_event(rec, msg.iteration, state, msg.finished, out)
        self._iteration_final(rec, msg.iteration, state, msg.finished, out)

    def _drop(self, rec: JobRecord, its: Sequence[int], state: JobState, reason: str, now: float,
              out: List[Action]) -> None:
        if not its:
            return
        rec.drops.append(Drop(its, state, now, reason))
        if self.journaling:
            span = [its.start, its.stop] if isinstance(its, range) else list(its)
            out.append(Record(records.json_record({"t": "drop", "time": now, "job": rec.name, "its": span,
                                                   "range": isinstance(its, range), "state": state.value,
                                                   "reason": reason})))
        if state is JobState.INTERRUPTED:
            if reason not in rec.messages:  # once per job: its count is in the job's counts
                self._message(rec, reason)
        elif state is not JobState.CANCELED or not rec.canceled:
            self._message(rec, reason if len(its) == rec.total else f"{len(its)} iteration(s): {reason}")
        for it in its:
            if rec.it_state(it) is JobState.QUEUED:
                rec.set_it_state(it, state)
        if self.emit_events and rec.task.iterative:
            which: Dict[str, Any] = ({"range": [its.start, its.stop]} if isinstance(its, range)
                                     else {"its": list(its)})
            out.append(StateEvent({"event": "iterations", "job": rec.name, "count": len(its),
                                   "state": state.value, "time": now, **which}))
        if self.each.waiting:
            self.each.final(self, rec, its, state, now, out)
        if state is not JobState.SUCCEED and state is not JobState.INTERRUPTED:
            self._break_dependants(rec.name, f"dependency {rec.name} {state.value}", now, out)
        self._maybe_final(rec, now, out)

    def iterations_succeeded(self, rec: JobRecord, its: Sequence[int], now: float, out: List[Action]) -> None:
        """A batch of iterations SUCCEEDED: what waits on one of them goes; the job may be done."""
        if self.each.waiting:
            self.each.final(self, rec, its, JobState.SUCCEED, now, out)
        if self._waiting_it:
            for it in its:
                waiting = self._waiting_it.pop((rec.name, it), None)
                if waiting:
                    self._release(waiting, out)
        self._maybe_final(rec, now, out)

    def _iteration_final(self, rec: JobRecord, it: int, state: JobState, now: float,
                         out: List[Action]) -> None:
        if self.each.waiting:
            self.each.final(self, rec, (it,), state, now, out)
        if self._waiting_it:
            waiting = self._waiting_it.pop((rec.name, it), None)
            if waiting:
                if state is JobState.SUCCEED:
                    self._release(waiting, out)
                else:
                    self._omit(waiting, f"dependency {rec.task.task_name(it)} {state.value}", now, out)
        if state is not JobState.SUCCEED and rec.name in self._waiting_whole:
            self._break_dependants(rec.name, f"dependency {rec.name} had a {state.value} iteration",
                                   now, out)
        self._maybe_final(rec, now, out)

    def _maybe_final(self, rec: JobRecord, now: float, out: List[Action]) -> None:
        if rec.all_final and not rec.state.is_final:
            self.finalize(rec, now, out)

    def finalize(self, rec: JobRecord, now: float, out: List[Action]) -> None:
        """Every iteration is final: the job takes the state they imply; dependants follow."""
        final = rec.summary_state()
        self.set_job_state(rec, final, now, out)
        self.active -= 1
        out.append(JobDone(rec))
        if final is JobState.SUCCEED:
            self._release(self._waiting_whole.pop(rec.name, []), out)
        elif final is not JobState.INTERRUPTED:  # an interrupted job's dependants are interrupted too
            self._break_dependants(rec.name, f"dependency {rec.name} {final.value}", now, out)

    def set_job_state(self, rec: JobRecord, state: JobState, now: float, out: List[Action]) -> None:
        if rec.set_state(state, now) and self.emit_events:
            out.append(StateEvent({"event": "job", "job": rec.name, "state": state.value, "time": now}))

    def _iteration_event(self, rec: JobRecord, it: int, state: JobState, now: float, out: List[Action]) -> None:
        if self.emit_events and rec.task.iterative:
            out.append(StateEvent({"event": "iteration", "job": rec.name, "iteration": it,
                                   "state": state.value, "time": now}))

    def _message(self, rec: JobRecord, text: str) -> None:
        if len(rec.messages) < MAX_MESSAGES:
            rec.messages.append(text)
        elif len(rec.messages) == MAX_MESSAGES:
            rec.messages.append("... (more messages not kept)")

    # ---- dependencies ----

    def _release(self, waiting: List[JobRecord], out: List[Action]) -> None:
        for rec in waiting:
            if rec.state.is_final or self.registry.get(rec.name) is not rec:
                continue
            rec.unmet -= 1
            if rec.unmet == 0 and not rec.dispatched and not rec.canceled:
                self._dispatch(rec, out)

    def _break_dependants(self, job: str, reason: str, now: float,
                          out: List[Action]) -> None:
        """Dependants that can no longer start: every one waiting on the whole job,
        and those waiting on iterations of it that did not succeed."""
        broken = list(self._waiting_whole.pop(job, []))
        rec = self.registry.get(job)
        for key in [k for k in self._waiting_it if k[0] == job]:
            st = rec.it_state(key[1]) if rec is not None else JobState.FAILED
            if st.is_final and st is not JobState.SUCCEED:
                broken.extend(self._waiting_it.pop(key))
        if broken:
            self._omit(broken, reason, now, out)

    def _omit(self, waiting: List[JobRecord], reason: str, now: float, out: List[Action]) -> None:
        live = [r for r in waiting if self.registry.get(r.name) is r]
        names: Set[str] = {r.name for r in live} | self.dag.descendants(r.name for r in live)
        targets = [r for r in (self.registry.get(n) for n in names) if r is not None]
        for rec in sorted(targets, key=lambda r: r.order):
            if rec.state.is_final or rec.dispatched:
                continue
            for it in rec.iterations():
                if rec.it_state(it) is JobState.QUEUED:
                    rec.set_it_state(it, JobState.OMITTED)
            rec.drops.append(Drop(rec.iterations(), JobState.OMITTED, now, reason))
            self._message(rec, f"omitted: {reason}")
            self.set_job_state(rec, JobState.OMITTED, now, out)
            self.active -= 1
            out.append(JobDone(rec))
            if self.each.waiting:  # those waiting for its iterations one by one
                self.each.final(self, rec, rec.iterations(), JobState.OMITTED, now, out)

    # ---- for tests ----

    def validate(self) -> None:
        active = 0
        for rec in self.registry:
            assert sum(rec.counts.values()) == rec.total, f"{rec.name}: counts do not add up"
            if not rec.state.is_final:
                active += 1
            else:
                assert rec.all_final, f"{rec.name}: final job with iterations still active"
        assert active == self.active, f"active count {self.active} != {active}"
        self.router.validate()


_HANDLERS = {
    "submit": GovernorCore._req_submit,
    "cancelJob": control.req_cancel,
    "removeJob": control.req_remove,
    "control": control.req_control,
    "finish": GovernorCore._req_finish,
    "listJobs": GovernorCore._req_query,
    "jobStatus": GovernorCore._req_query,
    "jobInfo": GovernorCore._req_query,
    "resourcesInfo": GovernorCore._req_query,
    "status": GovernorCore._req_query,
    "overview": GovernorCore._req_overview,  # hpilot's own: what `hpilot top` and `status` show
}


def dag_edges(spec: JobSpec) -> List[Edge]:
    """A job's dependencies as DAG edges; one on each iteration ("a:${it}") links the whole jobs."""
    return [(d.job, spec.name, d.iteration) for d in spec.after] + [(name, spec.name, None) for name in spec.each]


def _fill_submit_vars(ex: Execution, values: Dict[str, str]) -> Execution:
    def f(t):
        return None if t is None else (t if t.is_literal else t.partial(values))

    return dataclasses.replace(
        ex,
        exec=f(ex.exec), args=tuple(f(a) for a in ex.args), script=f(ex.script),
        env=tuple((k, f(t)) for k, t in ex.env), wd=f(ex.wd), stdin=f(ex.stdin),
        stdout=f(ex.stdout), stderr=f(ex.stderr), modules=tuple(f(m) for m in ex.modules),
        venv=f(ex.venv),
    )
