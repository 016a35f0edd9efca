"""The launcher a service or partition manager runs its tasks with, from the options.

Kept apart from the service loop so that a partition manager (``service --parent``),
which needs a launcher but not the governor, starts without importing the governor:
on a 2-CPU node every partition manager's start-up is CPU taken from the work.
"""

from __future__ import annotations

import os
from typing import Optional

from hpilot.governor.service.config import Options
from hpilot.governor.service.rundir import RunDir
from hpilot.launcher.api import Launcher, LauncherFactory
from hpilot.launcher.local import LocalLauncher


def local_launcher(opts: Options, run_dir: Optional[RunDir] = None) -> LauncherFactory:
    """The in-process launcher, with the statistics the options ask for written into
    ``run_dir`` (default: the run that ``prepare`` just made, ``<wd>/.hpilot/latest``).
    The wrapper is looked up now, so a missing one is bad input before any task runs."""
    if not (opts.enable_rt_stats or opts.enable_proc_stats):
        def make() -> Launcher:
            return LocalLauncher(grace=opts.kill_grace)

        return make
    from hpilot.launcher.rtstats import WrapperError, find_wrapper, open_stats

    run_path = run_dir.path_str if run_dir is not None else os.path.realpath(
        os.path.join(os.path.abspath(opts.wd), ".hpilot", "latest"))
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
        return LocalLauncher(grace=opts.kill_grace, rtstats=rt, procstats=ps)

    return make_with_stats
