"""The launcher a service or partition manager runs its tasks with, from the options.

Kept apart from the service loop so that a partition manager (``service --parent``),
which needs a launcher but not the governor, starts without importing the governor:
on a 2-CPU node every partition manager's start-up is CPU taken from the work.
"""

from __future__ import annotations

import os
import socket
from typing import List, Optional

from hpilot.governor.service.config import Options
from hpilot.governor.service.rundir import RunDir
from hpilot.launcher.api import Launcher, LauncherFactory
from hpilot.launcher.local import LocalLauncher
from hpilot.launcher.output import OutputStreams, output_dir


def task_output_dir(opts: Options, run_path: str) -> Optional[str]:
    """Where this run's streamed task output goes; None when it is discarded."""
    if opts.task_output != "stream":
        return None
    return os.path.abspath(opts.task_output_dir) if opts.task_output_dir else output_dir(run_path)


def task_streams(opts: Options, run_path: str) -> Optional[OutputStreams]:
    """One launcher's output file: ``<dir>/<partition or 'local'>-<host>-<pid>.out``."""
    out = task_output_dir(opts, run_path)
    if out is None:
        return None
    host = socket.gethostname().split(".")[0] or "host"
    return OutputStreams(out, f"{opts.id or 'local'}-{host}-{os.getpid()}")


def output_args(opts: Options, run_path: str) -> List[str]:
    """What a node agent needs to stream its tasks' output into the (shared) run directory."""
    out = task_output_dir(opts, run_path)
    return [] if out is None else ["--output-dir", out]


def local_launcher(opts: Options, run_dir: Optional[RunDir] = None) -> LauncherFactory:
    """The in-process launcher, with the statistics the options ask for written into
    ``run_dir`` (default: the run that ``prepare`` just made, ``<wd>/.hpilot/latest``).
    The wrapper is looked up now, so a missing one is bad input before any task runs."""
    run_path = run_dir.path_str if run_dir is not None else os.path.realpath(
        os.path.join(os.path.abspath(opts.wd), ".hpilot", "latest"))
    if not (opts.enable_rt_stats or opts.enable_proc_stats):
        def make() -> Launcher:
            return LocalLauncher(grace=opts.kill_grace, output=task_streams(opts, run_path))

        return make
    from hpilot.launcher.rtstats import WrapperError, find_wrapper, open_stats

    wrapper = None
    if opts.enable_rt_stats:
        try:
            wrapper = find_wrapper(opts.wrapper_rt_stats)
        except WrapperError as e:
            from hpilot.governor.service.startup import UserError

            raise UserError(str(e)) from None

    def make_with_stats() -> Launcher:
        rt, ps = open_stats(run_path, opts.enable_rt_stats, wrapper, opts.enable_proc_stats,
                            opts.proc_stats_interval)
        return LocalLauncher(grace=opts.kill_grace, rtstats=rt, procstats=ps, output=task_streams(opts, run_path))

    return make_with_stats
