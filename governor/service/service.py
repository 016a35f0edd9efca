"""The service process: one poll loop around the governor core and its partitions.

One path for every shape: the governor core routes every iteration to a partition.
Without ``--governor`` that partition runs here, in process (a PartitionRunner behind
the same messages a remote partition gets, with a credit large enough that a whole
range travels as one message); with it, partition managers register over the network
(``partitions.PartitionLinks``).  Client requests are answered at once; the work they
set off is done after, in the loop, so an answer never waits for process starts.  The
loop sleeps in ``zmq.Poller.poll`` on the launcher's exit descriptor, the sockets and
the signal pipe; it wakes for a child's exit, a wall-time deadline, a report flush or
a progress redraw, never on a fixed polling period.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import zmq
from hpilot.governor.core import counts as tallies
from hpilot.governor.core.events import (
    ClientRequest,
    FinishService,
    FromPart,
    Interrupt,
    JobDone,
    PartitionJoined,
    Record,
    Reply,
    SendToPartition,
    Settled,
    StateEvent,
)
from hpilot.governor.core.governor import ERROR, GovernorConfig, GovernorCore
from hpilot.governor.core.interrupt import left_to_resume
from hpilot.governor.core.states import JobState
from hpilot.governor.service import disk, owner
from hpilot.governor.service.config import Options
from hpilot.governor.service.host import SystemHost
from hpilot.governor.service.journal import FILE as JOURNAL_FILE
from hpilot.governor.service.journal import Journal, json_record
from hpilot.governor.service.launching import local_launcher
from hpilot.governor.service.local import LocalPort, LocalPortError
from hpilot.governor.service.net import ADDRESS_FILE, CLIENT_KEY_ENV, NetInterface
from hpilot.governor.service.partitions import ForwardedQuery, PartitionLinks
from hpilot.governor.service.progress import Progress
from hpilot.governor.service.report import JobReport, write_final_status
from hpilot.governor.service.rundir import RunDir
from hpilot.governor.service.stop import AllocationEnd, allocation_deadline
from hpilot.launcher import curve
from hpilot.launcher.api import LauncherFactory, poll_targets
from hpilot.launcher.private import WriteFailure
from hpilot.launcher.upstream import parent_watch
from hpilot.partition.core import PartitionConfig, PartitionCore
from hpilot.partition.models import EnvContext, models_for
from hpilot.partition.resources import ResourceSet, describe
from hpilot.partition.runner import PartitionRunner

if TYPE_CHECKING:
    from hpilot.governor.service.resume import Plan

log = logging.getLogger("hpilot.service")
# options a resume takes from the first run unless its own command line sets them
RESUMED_OPTIONS = ("report_format", "report_file", "envschema", "nodes", "system_core")
PART = "p0"  # the in-process partition of a single manager
LOCAL_CREDIT = 1 << 62  # it takes whole ranges: more cores' worth than any job has
PUMP_ROUNDS = 64  # governor <-> in-process partition exchanges per loop pass at most
# Each stops the run resumably: SIGTERM (Slurm at the time limit, scancel), SIGINT (Ctrl-C),
# SIGHUP (the terminal went away), SIGUSR1/SIGUSR2 (``#SBATCH --signal=B:USR1@120``).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


@dataclass
class Outcome:
    """How a run ended: what the command line prints and returns."""

    exit_status: int
    summary: str
    run_dir: str
    refused: List[str] = field(default_factory=list)
    stopped_by: Optional[str] = None


class Service:
    def __init__(self, opts: Options, resources: ResourceSet, run_dir: RunDir,
                 make_launcher: Optional[LauncherFactory] = None, resuming: bool = False) -> None:
        self.opts = opts
        self.run_dir = run_dir
        self.root_wd = os.path.abspath(opts.wd)
        self.started = time.time()
        self.resources = resources
        self.net: Optional[NetInterface] = None
        owner.claim(run_dir.path_str, run_dir.name)  # before base_env: every process of the run carries it
        base_env = dict(os.environ)
        if opts.net:
            keys = curve.RunKeys.of(run_dir.path_str)
            self.net = NetInterface(opts.net_iface, opts.net_port, opts.net_port_min, opts.net_port_max,
                                    opts.net_pub_port, not opts.disable_pub, lambda: keys.issue("client"))
            self.net.write_address(run_dir.path_str)
            if self.net.keys is not None:  # so that a task can submit more work
                base_env[CLIENT_KEY_ENV] = self.net.keys.path
        self.local = _local_port(run_dir.path_str)
        address = self.net.endpoints.address if self.net else None
        pub = self.net.endpoints.pub if self.net else None
        governor = opts.governor or bool(opts.partition_nodes) or bool(opts.slurm_partition_nodes)
        own_nodes = not opts.governor or bool(opts.partition_nodes) or bool(opts.slurm_partition_nodes)
        slurm = resources.source == "slurm"
        self.gov = GovernorCore(
            GovernorConfig(root_wd=self.root_wd, sname=_cluster_name(), started=self.started, address=address,
                           pub_address=pub, models=models_for(slurm), allocation=resources if own_nodes else None,
                           instance_id=run_dir.name),
            SystemHost(),
        )
        self._listeners()
        for port in (self.net, self.local):
            if port is not None:
                port.instance_id = run_dir.name  # the "manager" of QCG-PilotJob's events
        # One path: the governor core routes every iteration to a partition.  Without
        # --governor that is one partition in this process (same messages, no sockets);
        # with it, partition managers register over the network with self.links.
        self.links: Optional[PartitionLinks] = None
        self.inproc: Optional[PartitionRunner] = None
        self._finish_by: Optional[float] = None
        deadline = allocation_deadline(opts, resources)  # in an allocation: when to stop (stop.py)
        self.end = AllocationEnd(deadline) if deadline else None
        if governor:
            # partitions started by srun run on other nodes: loopback would not reach them
            iface = "0.0.0.0" if opts.slurm_partition_nodes and opts.net_iface == "127.0.0.1" else opts.net_iface
            self.links = PartitionLinks(iface, run_dir.path_str, opts.partition_heartbeat)
        else:
            env = EnvContext(base_env=base_env, envschema=opts.envschema, address=address,
                             binding=resources.binding, in_allocation=slurm, aux_dir=run_dir.path("hostfiles"))
            part = PartitionCore(resources, PartitionConfig(
                self.root_wd, env, models_for(slurm), uniq_prefix=run_dir.uniq,
                deadline=deadline.stop_at if deadline else None))
            self.inproc = PartitionRunner(part, (make_launcher or local_launcher(opts))())
            if self.end is not None:
                self.end.inproc = self.inproc
            nodes = tuple((n.name, len(n.cores)) for n in resources.nodes)
            self._to_gov(PartitionJoined(PART, nodes, now=self.started, credit=LOCAL_CREDIT))
        self.report = JobReport(run_dir.path(opts.report_file), opts.report_format, opts.report_flush,
                                fresh=resuming)
        self.journal: Optional[Journal] = None
        if opts.journal:
            self.journal = Journal(run_dir.path(JOURNAL_FILE), opts.journal_sync,
                                   header={"run": run_dir.name, "wd": self.root_wd,
                                           "file": os.path.abspath(opts.file_path) if opts.file_path else None,
                                           "options": {k: getattr(opts, k) for k in RESUMED_OPTIONS}})
            self.gov.journaling = True
        self.progress = Progress() if opts.show_progress else None
        self.reserve = disk.Reserve(run_dir.path(disk.RESERVE))  # space for the last words on a full disk
        self.refused: List[str] = []
        self.stopped_by: Optional[str] = None  # a signal's name, when one ended the run
        self._finish: Optional[str] = None
        self._stop_signal: Optional[int] = None

    # ---- wiring the cores together ----

    def request(self, payload: Any, reply_to: Any = None) -> Dict[str, Any]:
        """Feed one client request; returns its response.  What it sets off (a partition's
        work, spawns) happens after, in the loop: the answer never waits for processes."""
        result: Dict[str, Any] = {}

        def keep(reply: Reply) -> None:
            result.update(reply.response)

        self._to_gov(ClientRequest(payload, time.time(), reply_to), keep)
        if self.journal is not None:
            self.journal.flush()  # accepted means on record before the answer goes out
        return result

    def resume(self, run_path: str) -> Plan:
        """Replay the journal of ``run_path`` (this service's own run dir) and run what is left."""
        from hpilot.governor.service.resume import restore

        journaling, self.gov.journaling = self.gov.journaling, False  # replaying, not recording
        actions, plan = restore(self.gov, run_path, time.time())
        self.gov.journaling = journaling
        log.info(plan.text().replace("\n", "; "))
        self._carry_out(actions)
        return plan

    def _listeners(self) -> None:
        """Events are built while someone can hear them: a network publisher, or a local subscriber."""
        self.gov.emit_events = ((self.net is not None and self.net.pub is not None)
                                or (self.local is not None and self.local.listening))

    def _to_gov(self, ev: Any, on_reply: Optional[Callable[[Reply], None]] = None) -> None:
        self._carry_out(self.gov.handle(ev), on_reply)

    def _carry_out(self, actions: List[Any], on_reply: Optional[Callable[[Reply], None]] = None) -> None:
        outbox: Dict[str, List[Any]] = {}  # per partition, in order: sent as one multipart at the end
        for a in actions:
            if isinstance(a, Record):
                if self.journal is not None:
                    self.journal.add(a.data)
            elif isinstance(a, SendToPartition):
                if self.inproc is not None and a.partition == PART:
                    self.inproc.deliver(a.message)  # handled in the loop, after the answer
                elif self.links is not None:
                    outbox.setdefault(a.partition, []).append(a.message)
            elif isinstance(a, StateEvent):
                if self.net is not None:
                    self.net.publish(a.event)
                if self.local is not None:
                    self.local.publish(a.event)
            elif isinstance(a, JobDone):
                self.report.job_done(a.job)
            elif isinstance(a, Reply):
                if on_reply is not None:
                    on_reply(a)
            elif isinstance(a, FinishService):
                log.info("finishing: %s (cpu %.3f s)", a.reason, time.process_time())
                self._finish = self._finish or a.reason
        if self.links is not None:
            for part, msgs in outbox.items():
                self.links.send(part, *msgs)

    def _pump(self) -> None:
        """The in-process partition's work: its reports go to the governor core, whose
        answers may give it more, until both are quiet (a burst is bounded by the runner)."""
        inproc = self.inproc
        if inproc is None:
            return
        for _ in range(PUMP_ROUNDS):
            inproc.step()
            reports = inproc.take_reports()
            if not reports:
                return
            for r in reports:
                self._to_gov(FromPart(PART, r))

    # ---- the loop ----

    def run_loop(self) -> None:
        poller = zmq.Poller()
        for target in poll_targets(self.inproc.launcher) if self.inproc is not None else []:
            poller.register(target, zmq.POLLIN)
        wake_r = self._install_signals()
        if wake_r is not None:
            poller.register(wake_r, zmq.POLLIN)
        for sock in (self.net.sockets() if self.net else []) + (self.local.sockets() if self.local else []):
            poller.register(sock, zmq.POLLIN)
        for sock in self.links.sockets() if self.links else []:
            poller.register(sock, zmq.POLLIN)
        parent_fd = parent_watch(self.opts.parent_pid)
        if parent_fd is not None:
            poller.register(parent_fd, zmq.POLLIN)
        try:
            while not self._done():
                if self._stop_signal is not None:  # before any report: what it killed was interrupted
                    self._on_signal()
                self._stop_in_time()
                self._check_disk()
                self._pump()
                if self.journal is not None:
                    self.journal.flush()  # what just started is on record before we sleep
                if self._done():
                    break
                timeout = self._timeout()
                ready = dict(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
                if wake_r is not None and wake_r in ready:
                    _drain(wake_r)
                    self._on_signal()
                if parent_fd is not None and parent_fd in ready:
                    poller.unregister(parent_fd)
                    os.close(parent_fd)
                    parent_fd = None
                    if self._finish is None:
                        log.warning("the process that started this service (pid %s) is gone: finishing",
                                    self.opts.parent_pid)
                        self.stopped_by = "parent exit"
                        self.request({"request": "finish"})
                # subscriptions first: a client that saw its welcome and then submits gets every
                # event of its job, QUEUED included (XPUB welcomes before it hands the subscription over)
                if self.net is not None:
                    if self.net.pub is not None and (self.net.pub in ready or self.net.router in ready):
                        self.net.drain_subscriptions()
                    if self.net.router in ready:
                        self.net.process(self.request)
                if self.local is not None:
                    if self.local.pub in ready or self.local.router in ready:
                        self.local.drain_subscriptions()
                        self._listeners()
                    if self.local.router in ready:
                        self.local.process(self.request)
                if self.links is not None:
                    now = time.time()
                    for ev in self.links.process(now) + self.links.tick(now):
                        if isinstance(ev, ClientRequest) and isinstance(ev.reply_to, ForwardedQuery):
                            self._forwarded(ev.payload, ev.reply_to)
                        else:
                            self._to_gov(ev)
                    self._maybe_settled(now)
                    self._all_partitions_gone()
                self.report.maybe_flush()
                if self.journal is not None:
                    self.journal.flush()
                    self.journal.maybe_sync()
                if self.progress is not None:
                    self.progress.update(self.gov.registry)
        finally:
            self._restore_signals()

    def _forwarded(self, payload: Any, to: ForwardedQuery) -> None:
        """A client's request that reached a partition manager: answered as our own clients' are."""
        assert self.links is not None
        try:
            response = self.request(payload, to)
        except Exception:  # as in NetInterface: a bug must not take the governor down
            log.exception("request forwarded by partition %s failed: %.200s", to.partition, payload)
            response = {"code": ERROR, "message": "internal error while handling the request (see the governor's "
                        "service.log)"}
        self.links.answer(to, response)

    def _maybe_settled(self, now: float) -> None:
        """Once every partition this governor started registered (or the time for it
        passed, naming those that did not), jobs too big for all of them can fail."""
        router = self.gov.router
        if router.settled or self.links is None or not self.gov.expect_partitions:
            return
        missing = self.links.missing()
        if missing and now < self.started + self.opts.partition_register_timeout:
            return
        if missing:
            log.error("partition(s) %s did not register within %.0fs: carrying on without them",
                      ", ".join(missing), self.opts.partition_register_timeout)
        else:  # where start-up ends (bench/governor.py reads the steady phase from here)
            log.info("every partition registered: %d iteration(s) finished (governor cpu %.3f s)",
                     sum(rec.finished_count for rec in self.gov.registry), time.process_time())
        self._to_gov(Settled())

    def _all_partitions_gone(self) -> None:
        """No partition left to run anything (partitions.py, all_gone): stop resumably, naming them."""
        if self.links is None or self.gov.interrupted is not None or self._finish is not None:
            return
        why = self.links.all_gone()
        if why is not None:
            log.error("every partition is gone (%s): stopping the run (resumable)", why)
            self.interrupt(f"interrupted: every partition is gone ({why})")

    def _done(self) -> bool:
        if self._finish is None:
            return False
        if self.inproc is not None:  # every task of ours is reaped and reported
            return self.inproc.launcher.running == 0 and not self.inproc.busy
        # partitions elsewhere: wait (a while) for their last reports
        now = time.time()
        if self._finish_by is None:
            self._finish_by = now + self.opts.kill_grace + 3 * self.opts.partition_heartbeat
        return self.gov.router.outstanding == 0 or now > self._finish_by

    def _timeout(self) -> Optional[float]:
        now = time.time()
        waits = []
        if self.inproc is not None:
            deadline = self.inproc.next_deadline()
            if deadline is not None:
                waits.append(deadline - now)
            if self.inproc.launcher.needs_polling:
                waits.append(0.005)
        flush = self.report.maybe_flush()
        if flush is not None:
            waits.append(flush)
        sync = self.journal.maybe_sync() if self.journal is not None else None
        if sync is not None:
            waits.append(sync)
        if self.progress is not None:
            waits.append(self.progress.due_in())
        if self.end is not None and self.gov.interrupted is None:
            waits.append(self.end.deadline.stop_at - now)
        if self.links is not None:
            waits.append(min(self.links.next_deadline() - now, 0.2 if self._finish else 60.0))
        return max(0.0, min(waits)) if waits else None

    # ---- signals: Slurm sends SIGTERM when the allocation's time runs out ----

    def _install_signals(self) -> Optional[int]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake = (r, w)
        self._old_wakeup = signal.set_wakeup_fd(w)
        self._old_handlers = {s: signal.signal(s, self._record_signal) for s in STOP_SIGNALS}
        return r

    def _record_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    def _on_signal(self) -> None:
        if self._stop_signal is None:
            return
        name = signal.Signals(self._stop_signal).name
        self._stop_signal = None
        if self._finish is not None:
            log.warning("%s again: killing the remaining tasks now", name)
            if self.inproc is not None:
                self.inproc.launcher.kill_now()
            return
        log.warning("%s received: stopping resumably (nothing new starts, running tasks are killed and "
                    "left to the next resume)", name)
        self.stopped_by = name
        self.interrupt(f"interrupted by {name}")

    def _check_disk(self) -> None:
        """A file of the run that could not be written (journal, report, task output): the run
        stops resumably, saying which file and why; the reserve gives room for the last words."""
        failure = disk.first_failure(self.journal, self.report, self.inproc.launcher if self.inproc else None)
        if failure is None or self.gov.interrupted is not None:
            return
        self.reserve.release()
        if self.journal is not None and not self.journal.retry():  # what it could not write, now
            log.error("%s: the journal cannot be written even so; what ends from here runs again on resume",
                      self.journal.failed)
        log.error("%s: stopping the run (resumable once there is room again)", failure)
        self.interrupt(f"interrupted: {failure}")

    def _stop_in_time(self) -> None:
        """In an allocation: stop resumably --stop-before seconds ahead of its end, or at once when
        all that is left cannot end before then (every queued task's wall time is too long)."""
        if self.end is None or self.gov.interrupted is not None or self._finish is not None:
            return
        reason = self.end.why_stop(time.time(), bool(self.gov.router.ready))
        if reason is not None:
            log.warning("%s: stopping", reason)
            self.interrupt(reason)

    def interrupt(self, reason: str) -> None:
        """Stop the run resumably (governor/core/interrupt.py): a signal, the allocation's end, a disk."""
        self._to_gov(Interrupt(reason, time.time()))
        if self.journal is not None:
            self.journal.flush()

    def _restore_signals(self) -> None:
        if not hasattr(self, "_wake"):
            return
        signal.set_wakeup_fd(self._old_wakeup)
        for s, h in self._old_handlers.items():
            signal.signal(s, h)
        for fd in self._wake:
            os.close(fd)
        del self._wake

    # ---- the end ----

    def close(self) -> Outcome:
        if self.local is not None:
            self.local.close()  # first: nobody answers from here on, and <run dir>/local says so
        if self.inproc is not None:
            self.inproc.launcher.close()
        if self.links is not None:
            self.links.close(self.opts.kill_grace + 5)
        if self.journal is not None:
            self.journal.close()
        if self.net is not None:
            # the address file means "a service is here": a finished one must not be found
            with contextlib.suppress(OSError):
                os.remove(self.run_dir.path(ADDRESS_FILE))
            self.net.close()
        stopped_text = self._interrupted_text()
        if stopped_text:
            self.report.note(stopped_text)
        self.report.flush()
        self.report.close()
        if self.progress is not None:
            self.progress.close(self.gov.registry)
        finished = time.time()
        counts = self.gov.registry.counts()
        its = tallies.of_jobs(self.gov.registry)
        done = tallies.done(its)
        all_ok = counts[JobState.SUCCEED] == len(self.gov.registry)
        stopped = self._interrupted_text()
        status = exit_status(all_ok, bool(self.refused), self.stopped_by is not None,
                             self.gov.interrupted is not None and left_to_resume(self.gov) > 0)
        elapsed = finished - self.started
        status_path = self.run_dir.path("final_status")
        final = {
            "run": self.run_dir.name,
            "host": socket.gethostname(),
            "started": self.started,
            "finished": finished,
            "elapsed_s": round(elapsed, 6),
            "cpu_s": round(time.process_time(), 3),  # this process's own (a governor's, not its partitions')
            "resources": {"nodes": [{"name": n.name, "cores": list(n.cores)} for n in self.resources.nodes],
                          "total_cores": self.resources.total_cores, "binding": self.resources.binding},
            # governor mode: each partition's nodes (the node groups of `hpilot report ... cores`)
            "partitions": {name: [n.name for n in view.resources.nodes]
                           for name, view in sorted(self.gov.partitions.items())} if self.links is not None else None,
            "jobs": {s.value: counts[s] for s in JobState if counts[s]},
            "total_jobs": len(self.gov.registry),
            # honest counts (counts.py): canceled and not-started iterations are not "failed"
            "iterations": dict(total=sum(its.values()), **its),
            "refused_requests": self.refused,
            "stopped_by": self.stopped_by,
            # a run stopped resumably: why, and what `hpilot resume` will run (exit status 75)
            "interrupted": {"reason": self.gov.interrupted, "left_to_resume": left_to_resume(self.gov),
                            "message": stopped, "resume": f"hpilot resume {self.root_wd}"}
            if self.gov.interrupted else None,
            "exit_status": status,
            "reason": self._finish,
        }
        not_written = ""
        try:
            write_final_status(status_path, final)
        except OSError as e:  # a full disk even after the reserve was given back: said on the last line
            self.reserve.release()
            not_written = f"; {WriteFailure.of(status_path, e)}"
            log.error("%s", not_written[2:])
        states = ", ".join(f"{counts[s]} {s.value}" for s in JobState if counts[s]) or "no jobs"
        rate = f", {done / elapsed:.0f} tasks/s" if elapsed > 0 and done else ""
        refused = f"; {len(self.refused)} request(s) refused" if self.refused else ""
        if self.stopped_by and not stopped:
            refused += f"; stopped by {self.stopped_by}"
        lead = f"{stopped} (carry on with `hpilot resume {self.root_wd}`); " if stopped else ""
        summary = (f"hpilot: {lead}{len(self.gov.registry)} job(s) ({states}), {sum(its.values())} task(s): "
                   f"{tallies.text(its, 'none')}{refused}; "
                   f"{elapsed:.2f}s{rate}; run dir {self.run_dir.path_str}{first_failure(self.gov.registry)}"
                   f"{not_written}")
        log.info(summary)
        self.reserve.release()
        owner.release(self.run_dir.path_str)  # a clean end: a resume has nothing to check or kill
        return Outcome(status, summary, self.run_dir.path_str, list(self.refused), self.stopped_by)

    def _interrupted_text(self) -> Optional[str]:
        """``interrupted by SIGTERM: 225 iterations left to resume`` (None: the run was not interrupted)."""
        if self.gov.interrupted is None:
            return None
        left = left_to_resume(self.gov)
        return f"{self.gov.interrupted}: {left} iteration{'' if left == 1 else 's'} left to resume"


def first_failure(registry: Any) -> str:
    """``; first failure: sweep:3 exit code 3: <its last stderr line>`` for the summary line."""
    from hpilot.governor.service.report import failure_text

    for rec in registry:
        if rec.failures:
            f = rec.failures[0]
            entry = {"exit_code": f.exit_code, "reason": f.reason}
            if rec.task.iterative:
                entry["iteration"] = f.iteration
            last = (f.stderr or "").rstrip("\n").rpartition("\n")[2].strip()
            said = f": {last[:200]}" if last else ""
            return f"; first failure: {failure_text(rec.name, entry)}{said}"
    return ""


# The run stopped resumably (a signal, --stop-before, a full disk): `hpilot resume` carries on.
# sysexits' EX_TEMPFAIL ("try again later"): a campaign script loops while it sees this.
INTERRUPTED_EXIT = 75


def exit_status(all_jobs_ok: bool, refused: bool, stopped: bool, interrupted: bool = False) -> int:
    """0 all good; 1 a job did not succeed (or the run was stopped otherwise); 2 bad input only;
    75 (INTERRUPTED_EXIT) the run stopped resumably and work is left for `hpilot resume`."""
    if interrupted:
        return INTERRUPTED_EXIT
    if stopped or not all_jobs_ok:
        return 1
    return 2 if refused else 0


def _local_port(run_dir: str) -> Optional[LocalPort]:
    """The run's local sockets (local.py); a run that cannot have them still runs, and says so."""
    try:
        port = LocalPort(run_dir)
        port.write_address(run_dir)
        return port
    except (LocalPortError, OSError) as e:
        log.warning("this run cannot be watched with `hpilot status/top` without --net: %s", e)
        return None


def _cluster_name() -> str:
    return os.environ.get("SLURM_CLUSTER_NAME") or socket.gethostname().split(".")[0] or "local"


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def run_requests(svc: Service, requests: List[Any], source: str, start: int = 0) -> None:
    """Feed a file's requests in order; refusals are logged and remembered, never fatal.

    After each one the journal notes how far the file got, so that a resume of a
    service killed while reading a long file goes on from there."""
    for i, payload in enumerate(requests):
        if i < start:
            continue
        kind = payload.get("request") if isinstance(payload, dict) else None
        resp = svc.request(payload)
        # cancelJob/removeJob answer code 0 with the names they could not act on in data.errors
        # (QCG-PilotJob's shape): in a request file those are refused requests all the same
        partly = resp.get("code") == 0 and isinstance(resp.get("data"), dict) and resp["data"].get("errors")
        if resp.get("code", ERROR) != 0 or partly:
            msg = f"{source}: request #{i + 1} ({kind or '?'}): {resp.get('message', 'refused')}"
            log.error(msg)
            svc.refused.append(msg)
        else:
            # QCG-PilotJob's file mode writes every response to the log (manual 10.2)
            log.info("%s: request #%d (%s): %s", source, i + 1, kind, json.dumps(resp))
        if svc.journal is not None:
            svc.journal.add(json_record({"t": "file", "next": i + 1}))
            svc.journal.flush()
    log.info("resources: %s", describe(svc.resources))
