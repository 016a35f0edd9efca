"""From options to a running service: resources, launcher, run directory, the loop.

The command line and the Python API both start a service through :func:`serve`,
so they cannot drift apart.  Each source of resources and each kind of launcher
is chosen here, in one place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any, Dict, List, Optional

from hpilot.governor.config import Options
from hpilot.governor.fileiface import RequestFileError, load_requests
from hpilot.governor.rundir import RunDir, setup_logging
from hpilot.governor.service import LauncherFactory, Outcome, Service, local_launcher, run_requests
from hpilot.launcher.api import Launcher
from hpilot.launcher.pool import AgentPool, AgentStartError, SrunLauncher, srun_starter, ssh_starter
from hpilot.launcher.wire import new_secret, write_secret
from hpilot.partition.resources import ResourceError, ResourceSet, local_resources
from hpilot.partition.slurm import in_allocation, read_resources_file, scontrol_job, slurm_resources

log = logging.getLogger("hpilot.startup")


class UserError(Exception):
    """Bad input: printed as one clear line, exit status 2, no traceback."""


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
    if resources.source != "slurm":
        return local_launcher(opts, run_dir)
    if opts.disable_nl:
        def make_srun(on_exit: Any, on_start: Any) -> Launcher:
            return SrunLauncher(on_exit, on_start, grace=opts.kill_grace)

        return make_srun
    secret_file = run_dir.path("agents.secret")  # not the client secret: tasks get that one, never this
    write_secret(secret_file, new_secret())
    starter = ssh_starter if opts.nl_start_method == "ssh" else srun_starter

    def make(on_exit: Any, on_start: Any) -> Launcher:
        try:
            return AgentPool(on_exit, on_start, [n.name for n in resources.nodes], wd=opts.wd,
                             log_dir=run_dir.path("agents"), secret_file=secret_file, starter=starter,
                             grace=opts.kill_grace, init_timeout=opts.nl_init_timeout,
                             ready_threshold=opts.nl_ready_threshold)
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
    from hpilot.governor.restore import ResumeError, find_run

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
    from hpilot.governor.journal import FILE, JournalError, read_header
    from hpilot.governor.service import RESUMED_OPTIONS

    try:
        first = read_header(os.path.join(run, FILE)).get("options", {})
    except JournalError:
        return {}
    default = Options()
    return {k: first[k] for k in RESUMED_OPTIONS if k in first and getattr(opts, k) == getattr(default, k)}


def serve(opts: Options) -> Outcome:
    """Start a service from options, feed its request file, run until it finishes."""
    requests: List[Any] = []
    file_start = 0
    if opts.file_path:
        try:
            requests = load_requests(opts.file_path)
        except RequestFileError as e:
            raise UserError(str(e)) from None
    elif not opts.net and not opts.resume:
        raise UserError("nothing to run: give a request file (hpilot run FILE, or --file-path FILE)")
    resume_run = _resume_run(opts)
    if resume_run:
        # <wd>/.hpilot/<run>: the jobs' relative paths resolve against the original wd
        opts = dataclasses.replace(opts, wd=os.path.dirname(os.path.dirname(os.path.abspath(resume_run))),
                                   **_first_run_options(resume_run, opts))
    opts, resources, run_dir = prepare(opts, resume_run)
    # Tasks that run in the service's wd (the usual case) then need no chdir,
    # which lets the local launcher use posix_spawn, its fastest path.
    os.chdir(opts.wd)
    try:
        svc = Service(opts, resources, run_dir, launcher_for(opts, resources, run_dir), resuming=bool(resume_run))
    except OSError as e:  # e.g. the network port is taken
        raise UserError(str(e)) from None
    if resume_run:
        from hpilot.governor.restore import ResumeError

        try:
            plan = svc.resume(run_dir.path_str)
        except ResumeError as e:
            svc.close()
            raise UserError(str(e)) from None
        print(plan.text(), file=sys.stderr, flush=True)
        requests, file_start = _unread_requests(plan)
        if requests:
            opts = dataclasses.replace(opts, file_path=plan.file)
    if svc.net is not None:
        ep = svc.net.endpoints
        events = f", events {ep.pub}" if ep.pub else ""
        # one line, flushed: LocalManager reads the address from it
        print(f"hpilot: service listening on {ep.address}{events}; run dir {run_dir.path_str}", flush=True)
    if opts.file_path and requests:
        run_requests(svc, requests, opts.file_path, file_start)
    if opts.file_path or resume_run:
        if opts.finish_when_done or (resume_run and not opts.net):
            svc.request({"request": "control", "command": "finishAfterAllTasksDone"})
        elif not svc.gov.finish_when_done and not svc.gov.finishing and not opts.net:
            log.warning("the request file has no finishAfterAllTasksDone: finishing once it is read "
                        "(QCG-PilotJob's file-mode rule; `hpilot run` waits for all jobs)")
            svc.request({"request": "finish"})
    svc.run_loop()
    return svc.close()
