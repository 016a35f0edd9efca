"""From options to a running service: resources, launcher, run directory, the loop.

The command line and the Python API both start a service through :func:`serve`,
so they cannot drift apart.  Each source of resources and each kind of launcher
is chosen here, in one place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from hpilot.governor.errors import UserError  # noqa: F401 - raised here, and imported from here by older code
from hpilot.governor.service.config import Options
from hpilot.governor.service.fileiface import RequestFileError, load_requests
from hpilot.governor.service.launching import local_launcher, output_args, task_output_dir, task_streams
from hpilot.governor.service.rundir import RunDir, setup_logging
from hpilot.launcher import curve
from hpilot.launcher.api import Launcher, LauncherFactory
from hpilot.launcher.pool import AgentPool, AgentStartError, SrunLauncher, srun_starter, ssh_starter, stats_args
from hpilot.launcher.private import make_dir
from hpilot.partition.resources import ResourceError, ResourceSet, local_resources
from hpilot.partition.slurm import in_allocation, read_resources_file, scontrol_job, slurm_resources

if TYPE_CHECKING:
    from hpilot.governor.service.service import Outcome

log = logging.getLogger("hpilot.startup")


def not_available(opts: Options) -> Optional[str]:
    """Flags this build accepts (QCG-PilotJob's spellings) but cannot honour yet."""
    wanted: dict = {}
    missing = [flag for flag, on in wanted.items() if on]
    if not missing:
        return None
    return f"{', '.join(missing)}: not available in this build of hpilot (local mode only)"


def resources_for(opts: Options) -> ResourceSet:
    """--resources auto takes the Slurm allocation this runs in, unless nodes were declared
    (--nodes or [[node]] tables imply local, as in QCG-PilotJob); a resources file implies slurm."""
    declared = bool(opts.nodes or opts.node)
    slurm = opts.resources == "slurm" or (opts.resources == "auto" and not declared and (
        opts.slurm_resources_file is not None or in_allocation(os.environ)))
    try:
        if slurm and declared:
            raise ResourceError("--resources slurm takes the nodes from the allocation: drop --nodes/[[node]]")
        if opts.slurm_resources_file is not None and not slurm:
            raise ResourceError("--slurm-resources-file describes a Slurm allocation: it cannot be used with "
                                "--resources local or --nodes")
        if not slurm:
            return local_resources(opts.nodes or None, opts.node or None, opts.system_core)
        if opts.slurm_resources_file is not None:
            path = opts.slurm_resources_file
            return slurm_resources({}, read_resources_file(path), opts.slurm_limit_nodes_range_begin,
                                   opts.slurm_limit_nodes_range_end, opts.system_core,
                                   f"--slurm-resources-file {path}")
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID")
        return slurm_resources(os.environ, scontrol_job(job) if job else None, opts.slurm_limit_nodes_range_begin,
                               opts.slurm_limit_nodes_range_end, opts.system_core)
    except ResourceError as e:
        raise UserError(str(e)) from None


def launcher_for(opts: Options, resources: ResourceSet, run_dir: RunDir) -> LauncherFactory:
    """Local processes, or in Slurm one agent per node (--disable-nl: one srun per task)."""
    if opts.dry_run_tasks is not None:
        from hpilot.launcher.dryrun import DryRunLauncher

        delay = opts.dry_run_tasks

        def make_dry() -> Launcher:
            return DryRunLauncher(delay)

        return make_dry
    if resources.source != "slurm":
        return local_launcher(opts, run_dir)
    if opts.disable_nl:
        def make_srun() -> Launcher:
            return SrunLauncher(grace=opts.kill_grace, output=task_streams(opts, run_dir.path_str))

        return make_srun
    keys = curve.RunKeys.of(run_dir.path_str).issue("agent")  # not the client key: tasks get that one, never this
    starter = ssh_starter if opts.nl_start_method == "ssh" else srun_starter

    def make() -> Launcher:
        try:
            return AgentPool([n.name for n in resources.nodes], wd=opts.wd,
                             log_dir=run_dir.path("agents"), keys=keys, starter=starter,
                             grace=opts.kill_grace, init_timeout=opts.nl_init_timeout,
                             ready_threshold=opts.nl_ready_threshold,
                             agent_extra=stats_args(run_dir.path_str, opts.enable_rt_stats, opts.wrapper_rt_stats,
                                                    opts.enable_proc_stats, opts.proc_stats_interval)
                             + output_args(opts, run_dir.path_str))
        except AgentStartError as e:
            log.error("%s", e)
            raise UserError(str(e)) from None

    return make


def prepare(opts: Options, resume_run: Optional[str] = None) -> tuple:
    """Checks and the run directory; returns (opts with an absolute wd, resources, run dir)."""
    why = not_available(opts)
    if why:
        raise UserError(why)
    resources = resources_for(opts)
    try:
        wd = os.path.abspath(opts.wd)
        os.makedirs(wd, exist_ok=True)
        run_dir = RunDir.existing(resume_run) if resume_run else RunDir(wd)
    except OSError as e:
        raise UserError(f"--wd {opts.wd}: cannot use it as the working directory: {e.strerror}") from None
    opts = dataclasses.replace(opts, wd=wd)
    setup_logging(run_dir, opts.log)
    return opts, resources, run_dir


def _resume_run(opts: Options) -> Optional[str]:
    if not opts.resume:
        return None
    from hpilot.governor.service.resume import ResumeError, find_run

    try:
        return find_run(opts.resume)
    except ResumeError as e:
        raise UserError(str(e)) from None


def _unread_requests(plan: Any) -> tuple:
    """The first run's request file, when it had not been read to the end."""
    if not plan.file:
        return [], 0
    try:
        requests = load_requests(plan.file)
    except RequestFileError as e:
        log.warning("cannot read the first run's request file again: %s", e)
        return [], 0
    return (requests, plan.file_next) if plan.file_next < len(requests) else ([], 0)


def _first_run_options(run: str, opts: Options) -> Dict[str, Any]:
    """The first run's report and environment options, where this command line left the default."""
    from hpilot.governor.service.journal import FILE, JournalError, read_header
    from hpilot.governor.service.service import RESUMED_OPTIONS

    try:
        first = read_header(os.path.join(run, FILE)).get("options", {})
    except JournalError:
        return {}
    default = Options()
    return {k: first[k] for k in RESUMED_OPTIONS if k in first and getattr(opts, k) == getattr(default, k)}


def serve(opts: Options, given: Optional[List[Any]] = None,
          on_start: Optional[Callable[[str, str], None]] = None) -> Outcome:
    """Start a service from options, feed its request file (or the ``given`` requests: a
    command line's job), run until it finishes.  ``on_start(run dir, wd)`` is called once
    the run can be watched (its local sockets are up), before any request is fed."""
    from hpilot.governor.service.service import Service, run_requests  # not at import: partition managers skip it

    requests: List[Any] = list(given or [])
    file_start = 0
    if opts.file_path:
        try:
            requests = load_requests(opts.file_path)
        except RequestFileError as e:
            raise UserError(str(e)) from None
    elif not opts.net and not opts.resume and not requests:
        raise UserError("nothing to run: give a request file (hpilot run FILE, or --file-path FILE)")
    check_governor_flags(opts)
    resume_run = _resume_run(opts)
    taken_over: List[str] = []
    if resume_run:
        from hpilot.governor.service.owner import take_over

        taken_over = take_over(resume_run)  # refuses while the previous manager runs; kills what it left
        for line in taken_over:
            print(f"hpilot: {line}", file=sys.stderr, flush=True)
        # <wd>/.hpilot/<run>: the jobs' relative paths resolve against the original wd
        opts = dataclasses.replace(opts, wd=os.path.dirname(os.path.dirname(os.path.abspath(resume_run))),
                                   **_first_run_options(resume_run, opts))
    opts, resources, run_dir = prepare(opts, resume_run)
    for line in taken_over:
        log.warning("%s", line)
    # Tasks that run in the service's wd (the usual case) then need no chdir,
    # which lets the local launcher use posix_spawn, its fastest path.
    firsts = partition_groups(opts, resources, task_output_dir(opts, run_dir.path_str))
    groups = [(name, args) for name, args, _ in firsts]
    os.chdir(opts.wd)
    try:
        svc = Service(opts, resources, run_dir, launcher_for(opts, resources, run_dir), resuming=bool(resume_run))
    except OSError as e:  # e.g. the network port is taken
        raise UserError(str(e)) from None
    if resume_run:
        from hpilot.governor.service.resume import ResumeError

        try:
            plan = svc.resume(run_dir.path_str)
        except ResumeError as e:
            svc.close()
            raise UserError(str(e)) from None
        print(plan.text(), file=sys.stderr, flush=True)
        requests, file_start = _unread_requests(plan)
        if requests:
            opts = dataclasses.replace(opts, file_path=plan.file)
    if svc.links is not None:
        svc.gov.expect_partitions = len(groups)
        svc.links.spawn(groups, opts.wd, opts.log, srun=bool(opts.slurm_partition_nodes),
                        first_node={name: node for name, _, node in firsts})
        print(f"hpilot: governor: partitions register at {svc.links.address}; run dir {run_dir.path_str}",
              flush=True)
    if svc.net is not None:
        ep = svc.net.endpoints
        events = f", events {ep.pub}" if ep.pub else ""
        # one line, flushed: LocalManager reads the address from it
        print(f"hpilot: service listening on {ep.address}{events}; run dir {run_dir.path_str}", flush=True)
    if on_start is not None:
        on_start(run_dir.path_str, opts.wd)
    if requests:
        run_requests(svc, requests, opts.file_path or "command line", file_start)
    if opts.file_path or resume_run or given:
        if opts.finish_when_done or (resume_run and not opts.net):
            svc.request({"request": "control", "command": "finishAfterAllTasksDone"})
        elif not svc.gov.finish_when_done and not svc.gov.finishing and not opts.net:
            log.warning("the request file has no finishAfterAllTasksDone: finishing once it is read "
                        "(QCG-PilotJob's file-mode rule; `hpilot run` waits for all jobs)")
            svc.request({"request": "finish"})
    svc.run_loop()
    return svc.close()


def check_governor_flags(opts: Options) -> None:
    """Bad combinations of the governor-mode flags: refused before anything starts."""
    gov = opts.governor or opts.partition_nodes is not None or opts.slurm_partition_nodes is not None
    if opts.parent:
        clash = [f for f, on in (("--governor", opts.governor), ("--partition-nodes", opts.partition_nodes),
                                 ("--slurm-partition-nodes", opts.slurm_partition_nodes),
                                 ("--file-path", opts.file_path), ("--resume", opts.resume)) if on]
        if clash:
            raise UserError(f"--parent makes this a partition manager that takes its work from the governor: "
                            f"it cannot be used with {', '.join(clash)}")
        if opts.net_pub_port is not None:
            raise UserError("--net-pub-port: a partition manager publishes no events (with --net it forwards "
                            "requests to the governor); subscribe to the governor's events")
    elif opts.id or opts.tags:
        raise UserError("--id and --tags name a partition manager: they need --parent ADDRESS")
    for flag, n in (("--partition-nodes", opts.partition_nodes),
                    ("--slurm-partition-nodes", opts.slurm_partition_nodes)):
        if n is not None and n < 1:
            raise UserError(f"{flag} must be a whole number >= 1, not {n}")
    if opts.partition_nodes is not None and opts.slurm_partition_nodes is not None:
        raise UserError("--partition-nodes (local) and --slurm-partition-nodes (Slurm): give one of them")
    if gov and opts.partition_heartbeat <= 0:
        raise UserError("--partition-heartbeat must be > 0")


def partition_groups(opts: Options, resources: ResourceSet, output: Optional[str] = None
                     ) -> List[Tuple[str, List[str], str]]:
    """The partitions the governor starts itself: (name, the manager's extra arguments, first node).
    ``output``: the governor's task output dir, where their tasks' output goes too (None: discarded)."""
    n = opts.partition_nodes or opts.slurm_partition_nodes
    if not n:
        return []
    nodes = resources.nodes
    if n > len(nodes):
        flag = "--partition-nodes" if opts.partition_nodes else "--slurm-partition-nodes"
        raise UserError(f"{flag} {n}: the allocation has only {len(nodes)} node(s)")
    if opts.slurm_partition_nodes and resources.source != "slurm":
        raise UserError("--slurm-partition-nodes needs a Slurm allocation; locally use --partition-nodes")
    groups = []
    for i in range(0, len(nodes), n):
        part = nodes[i:i + n]
        name = f"p{i // n + 1}"
        if resources.source == "slurm":
            args = ["--resources", "slurm", "--slurm-limit-nodes-range-begin", str(i),
                    "--slurm-limit-nodes-range-end", str(i + len(part))]
        else:
            args = ["--nodes", ",".join(f"{nd.name}:{len(nd.cores)}" for nd in part)]
        if opts.dry_run_tasks is not None:
            args += ["--dry-run-tasks", str(opts.dry_run_tasks)]
        args += ["--task-output", "discard"] if output is None else ["--task-output-dir", output]
        groups.append((name, args, part[0].name))
    return groups


def serve_partition(opts: Options) -> int:
    """``hpilot service --parent ADDRESS``: run a partition manager until its governor lets it go."""
    from hpilot.partition import wire
    from hpilot.partition.core import PartitionConfig, PartitionCore
    from hpilot.partition.manager import ManagerError, PartitionManager, governor_run_path, resolve_parent
    from hpilot.partition.models import EnvContext, models_for

    check_governor_flags(opts)
    assert opts.parent is not None
    try:
        address, key_file = resolve_parent(opts.parent)
    except ManagerError as e:
        raise UserError(str(e)) from None
    key_file = os.environ.get(wire.KEY_ENV) or key_file
    if not key_file:
        raise UserError(f"--parent {opts.parent}: the run's partition key is unknown: set {wire.KEY_ENV} to the "
                        "path of the governor's <run dir>/partition.key, or give the governor's wd as --parent")
    try:
        keys = curve.read_peer_keys(key_file)
    except curve.KeyFileError as e:
        raise UserError(f"--parent {opts.parent}: {e}") from None
    governor_run = governor_run_path(opts.parent) if opts.net else None  # before the chdir below
    governor_run = os.path.abspath(governor_run) if governor_run else None
    resources = resources_for(opts)
    opts = dataclasses.replace(opts, wd=os.path.abspath(opts.wd))
    run_dir = _partition_run_dir(opts.wd, opts.id)
    if opts.task_output_dir is None:  # next to the governor's when --parent names its wd, else here
        gov_run = governor_run_path(opts.parent or "")
        opts = dataclasses.replace(opts, task_output_dir=os.path.join(os.path.abspath(gov_run), "output")
                                   if gov_run else run_dir.path("output"))
    setup_logging(run_dir, opts.log)
    os.chdir(opts.wd)
    slurm = resources.source == "slurm"
    env = EnvContext(base_env=dict(os.environ), envschema=opts.envschema, address=None, binding=resources.binding,
                     in_allocation=slurm, aux_dir=run_dir.path("hostfiles"))
    from hpilot.governor.service.stop import EndWatch, allocation_deadline

    deadline = allocation_deadline(opts, resources)  # a task that cannot end in this allocation waits
    core = PartitionCore(resources, PartitionConfig(opts.wd, env, models_for(slurm), uniq_prefix=run_dir.uniq,
                                                    deadline=deadline.stop_at if deadline else None))
    tags = tuple(t.strip() for t in opts.tags.split(",") if t.strip())
    net = _partition_client_port(opts, run_dir, governor_run) if opts.net else None
    try:
        mgr = PartitionManager(address, keys, opts.id or "", tags, core, launcher_for(opts, resources, run_dir),
                               opts.partition_register_timeout, client=net,
                               query_timeout=opts.partition_query_timeout, parent_pid=opts.parent_pid,
                               reread_deadline=EndWatch(deadline) if deadline else None)
        return mgr.run()
    except ManagerError as e:
        log.error("%s", e)
        raise UserError(str(e)) from None
    finally:
        if net is not None:
            with contextlib.suppress(OSError):  # "a service is here": an exited one must not be found
                os.remove(run_dir.path("address"))
            net.close()


def _partition_client_port(opts: Options, run_dir: RunDir, governor_run: Optional[str]) -> Any:
    """``--parent ... --net``: a client port whose every request the governor answers.

    The same NetInterface (and rules) as a service's, without events (clients subscribe
    to the governor's; its ``status`` answer names them).  Off loopback it is a CURVE
    server: with the governor's server key and client key when this manager can read them
    (``--parent`` is the governor's wd or run dir), so the run's clients and tasks reach it
    with the key they have; else with keys of its own.  Either way the client key file is
    in this partition's run dir (``client.key``, 0600), next to the address file."""
    from hpilot.governor.service.net import NetInterface

    def keys() -> curve.Issued:
        own = curve.RunKeys.of(run_dir.path_str)
        if governor_run is not None:
            with contextlib.suppress(curve.KeyFileError):
                server = curve.read_pair(os.path.join(governor_run, "server.key"))
                client = curve.read_peer_keys(os.path.join(governor_run, "client.key"))
                own = curve.RunKeys(run_dir.path_str, server)
                return own.issue("client", curve.KeyPair(client.public, client.secret))
        return own.issue("client")

    try:
        net = NetInterface(opts.net_iface, opts.net_port, opts.net_port_min, opts.net_port_max, None, False, keys)
    except OSError as e:  # e.g. the port is taken
        raise UserError(str(e)) from None
    net.write_address(run_dir.path_str)
    log.info("clients: requests at %s are forwarded to the governor (no events here: subscribe to the "
             "governor's)%s", net.endpoints.address, "; CURVE: the run's client key is required"
             if net.keys is not None else "")
    print(f"hpilot: partition manager listening on {net.endpoints.address} (requests are answered by the "
          f"governor); run dir {run_dir.path_str}", flush=True)
    return net


def _partition_run_dir(wd: str, pid: Optional[str]) -> RunDir:
    """``<wd>/.hpilot/partitions/<id>-<host>-<pid>``: a partition manager's log and files.
    Not a run of its own: ``<wd>/.hpilot/latest`` stays the governor's."""
    import socket
    import time

    rd = RunDir.__new__(RunDir)
    host = socket.gethostname().split(".")[0] or "host"
    rd.name = f"{pid or 'partition'}-{host}-{os.getpid()}"
    rd.path_str = os.path.join(wd, ".hpilot", "partitions", rd.name)
    try:
        make_dir(os.path.dirname(os.path.dirname(rd.path_str)))
        make_dir(os.path.dirname(rd.path_str))
        make_dir(rd.path_str)
    except OSError as e:
        raise UserError(f"--wd {wd}: cannot write the partition's files: {e.strerror}") from None
    rd.uniq = f"{os.getpid():x}{int(time.time()) & 0xFFFFFF:06x}-"
    return rd
