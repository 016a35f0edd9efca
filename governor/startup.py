"""From options to a running service: resources, launcher, run directory, the loop.

The command line and the Python API both start a service through :func:`serve`,
so they cannot drift apart.  Each source of resources and each kind of launcher
is chosen here, in one place.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, List, Optional

from hpilot.governor.config import Options
from hpilot.governor.fileiface import RequestFileError, load_requests
from hpilot.governor.rundir import RunDir, setup_logging
from hpilot.governor.service import LauncherFactory, Outcome, Service, local_launcher, run_requests
from hpilot.partition.resources import ResourceError, ResourceSet, local_resources

log = logging.getLogger("hpilot.startup")


class UserError(Exception):
    """Bad input: printed as one clear line, exit status 2, no traceback."""


def not_available(opts: Options) -> Optional[str]:
    """Flags this build accepts (QCG-PilotJob's spellings) but cannot honour yet."""
    wanted = {
        "--resources slurm": opts.resources == "slurm",
        "--slurm-resources-file": opts.slurm_resources_file is not None,
        "--slurm-limit-nodes-range-begin/end": opts.slurm_limit_nodes_range_begin is not None
        or opts.slurm_limit_nodes_range_end is not None,
        "--enable-rt-stats": opts.enable_rt_stats,
        "--wrapper-rt-stats": opts.wrapper_rt_stats is not None,
        "--enable-proc-stats": opts.enable_proc_stats,
    }
    missing = [flag for flag, on in wanted.items() if on]
    if not missing:
        return None
    return f"{', '.join(missing)}: not available in this build of hpilot (local mode only)"


def resources_for(opts: Options) -> ResourceSet:
    try:
        return local_resources(opts.nodes or None, opts.node or None, opts.system_core)
    except ResourceError as e:
        raise UserError(str(e)) from None


def launcher_for(opts: Options, resources: ResourceSet, run_dir: RunDir) -> LauncherFactory:
    return local_launcher(opts)


def prepare(opts: Options) -> tuple:
    """Checks and the run directory; returns (opts with an absolute wd, resources, run dir)."""
    why = not_available(opts)
    if why:
        raise UserError(why)
    resources = resources_for(opts)
    try:
        wd = os.path.abspath(opts.wd)
        os.makedirs(wd, exist_ok=True)
        run_dir = RunDir(wd)
    except OSError as e:
        raise UserError(f"--wd {opts.wd}: cannot use it as the working directory: {e.strerror}") from None
    opts = dataclasses.replace(opts, wd=wd)
    setup_logging(run_dir, opts.log)
    return opts, resources, run_dir


def serve(opts: Options) -> Outcome:
    """Start a service from options, feed its request file, run until it finishes."""
    requests: List[Any] = []
    if opts.file_path:
        try:
            requests = load_requests(opts.file_path)
        except RequestFileError as e:
            raise UserError(str(e)) from None
    elif not opts.net:
        raise UserError("nothing to run: give a request file (hpilot run FILE, or --file-path FILE)")
    opts, resources, run_dir = prepare(opts)
    # Tasks that run in the service's wd (the usual case) then need no chdir,
    # which lets the local launcher use posix_spawn, its fastest path.
    os.chdir(opts.wd)
    svc = Service(opts, resources, run_dir, launcher_for(opts, resources, run_dir))
    if opts.file_path:
        run_requests(svc, requests, opts.file_path)
        if opts.finish_when_done:
            svc.request({"request": "control", "command": "finishAfterAllTasksDone"})
        elif not svc.gov.finish_when_done and not svc.gov.finishing and not opts.net:
            log.warning("the request file has no finishAfterAllTasksDone: finishing once it is read "
                        "(QCG-PilotJob's file-mode rule; `hpilot run` waits for all jobs)")
            svc.request({"request": "finish"})
    svc.run_loop()
    return svc.close()
