"""The ``hpilot`` command.

``hpilot run FILE`` runs a QCG-PilotJob request file to the end.  ``hpilot
service`` takes QCG-PilotJob's flags unchanged (``--file-path`` ...), with its
semantics: a file without ``finishAfterAllTasksDone`` ends the service once read.

Exit status: 0 every job SUCCEED and every request was accepted; 1 some job did
not succeed; 2 bad input (options, config, request file, a refused request) with
every job that was accepted succeeding; 3 an internal error (a bug: see service.log).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Any, Callable, Dict, NoReturn

import click
from hpilot.governor.config import CHOICES, ConfigError, build_options

log = logging.getLogger("hpilot.cli")


class UserError(Exception):
    """Bad input: printed as one clear line, exit status 2, no traceback."""


def _fail(msg: str) -> NoReturn:
    raise UserError(msg)


def service_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--config", "config", type=str, default=None, metavar="FILE.toml",
                     help="TOML file with any of these options (command line wins)."),
        click.option("--wd", type=str, default=None, help="Working directory of the service and its jobs."),
        click.option("--nodes", type=str, default=None,
                     help="Local resources: '4', 'n1:2', '4,2,2' or 'n1:4,n2:4'."),
        click.option("--resources", type=click.Choice(CHOICES["resources"]), default=None,
                     help="Where resources come from."),
        click.option("--envschema", type=click.Choice(CHOICES["envschema"]), default=None,
                     help="Task environment: auto (QCG_PM_*/HPILOT_*) or slurm (adds SLURM_*)."),
        click.option("--report-format", type=click.Choice(CHOICES["report_format"]), default=None),
        click.option("--report-file", type=str, default=None, help="Job report file name (in the run dir)."),
        click.option("--log", type=click.Choice(CHOICES["log"]), default=None, help="service.log level."),
        click.option("--system-core/--no-system-core", default=None, help="Keep one core for hpilot."),
        click.option("--show-progress/--no-show-progress", default=None, help="Live progress line on stderr."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hpilot")
def cli() -> None:
    """hpilot: many tasks inside one allocation (QCG-PilotJob compatible)."""


@cli.command()
@click.argument("file", type=str)
@service_options
def run(file: str, **kw: Any) -> None:
    """Run the requests in FILE (a QCG-PilotJob request file) until every job is done."""
    kw["file_path"] = file
    kw["finish_when_done"] = True
    _serve(kw)


@cli.command()
@click.option("--file-path", type=str, default=None, help="Request file (QCG-PilotJob format).")
@click.option("--file", "file_flag", is_flag=True, default=False, help="Enable the file interface.")
@service_options
def service(file_flag: bool, **kw: Any) -> None:
    """Start the service with QCG-PilotJob's flags (qcg-pm-service)."""
    if file_flag and not kw.get("file_path"):
        _fail("--file needs --file-path FILE")
    _serve(kw)


def _serve(kw: Dict[str, Any]) -> None:
    from hpilot.governor.fileiface import RequestFileError, load_requests
    from hpilot.governor.rundir import RunDir, setup_logging
    from hpilot.governor.service import Service, run_requests
    from hpilot.partition.resources import ResourceError, local_resources

    config = kw.pop("config", None)
    try:
        opts = build_options(config, kw)
    except ConfigError as e:
        _fail(str(e))
    if opts.resources == "slurm":
        _fail("--resources slurm: this hpilot build runs in local mode only; use --resources local")
    file_path = opts.file_path
    if not file_path:
        _fail("nothing to run: give a request file (hpilot run FILE, or --file-path FILE)")
    try:
        resources = local_resources(opts.nodes or None, opts.node or None, opts.system_core)
        requests = load_requests(file_path)
    except (ResourceError, RequestFileError) as e:
        _fail(str(e))
    try:
        wd = os.path.abspath(opts.wd)
        os.makedirs(wd, exist_ok=True)
        run_dir = RunDir(wd)
        # Tasks that run in the service's wd (the usual case) then need no chdir,
        # which lets the launcher use posix_spawn, its fastest path.
        os.chdir(wd)
    except OSError as e:
        _fail(f"--wd {opts.wd}: cannot use it as the working directory: {e.strerror}")
    opts = dataclasses.replace(opts, wd=wd)
    setup_logging(run_dir, opts.log)
    svc = Service(opts, resources, run_dir)
    run_requests(svc, requests, file_path)
    if opts.finish_when_done:
        svc.request({"request": "control", "command": "finishAfterAllTasksDone"})
    elif not svc.gov.finish_when_done and not svc.gov.finishing:
        log.warning("the request file has no finishAfterAllTasksDone: finishing once it is read "
                    "(QCG-PilotJob's file-mode rule; `hpilot run` waits for all jobs)")
        svc.request({"request": "finish"})
    svc.run_loop()
    outcome = svc.close()
    for msg in outcome.refused:
        click.echo(f"hpilot: {msg}", err=True)
    click.echo(outcome.summary)
    sys.exit(outcome.exit_status)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except UserError as e:
        click.echo(f"hpilot: error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("hpilot: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as e:  # a bug: the user gets one line, the log gets the traceback
        logging.getLogger("hpilot").exception("internal error")
        click.echo(f"hpilot: internal error: {type(e).__name__}: {e} (details in the run's service.log)",
                   err=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
