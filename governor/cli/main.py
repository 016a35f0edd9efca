"""The ``hpilot`` command.

``hpilot run FILE`` runs a QCG-PilotJob request file to the end.  ``hpilot
service`` takes QCG-PilotJob's flags unchanged (``--file-path`` ...), with its
semantics: a file without ``finishAfterAllTasksDone`` ends the service once read.

Exit status: 0 every job SUCCEED and every request was accepted; 1 some job did
not succeed; 2 bad input (options, config, request file, a refused request) with
every job that was accepted succeeding; 3 an internal error (a bug: see service.log).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Dict, NoReturn

import click
from hpilot.governor.service.config import CHOICES, ConfigError, build_options
from hpilot.governor.service.startup import UserError

log = logging.getLogger("hpilot.cli")


def _fail(msg: str) -> NoReturn:
    raise UserError(msg)


def _opt(*names: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    kw.setdefault("default", None)
    return click.option(*names, **kw)


def _flag(name: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A boolean flag whose absence is None, so that a TOML value is not overridden."""
    return click.option(f"--{name}/--no-{name}", default=None, help=help)


SERVICE_OPTIONS = [
    _opt("--config", "config", type=str, metavar="FILE.toml", help="TOML file with any of these options."),
    _opt("--wd", type=str, help="Working directory of the service and its jobs."),
    _opt("--nodes", type=str, help="Local resources: '4', 'n1:2', '4,2,2' or 'n1:4,n2:4'."),
    _opt("--resources", type=click.Choice(CHOICES["resources"]), help="Where resources come from."),
    _opt("--envschema", type=click.Choice(CHOICES["envschema"]),
         help="Task environment: auto (QCG_PM_*/HPILOT_*) or slurm (adds SLURM_*)."),
    _opt("--report-format", type=click.Choice(CHOICES["report_format"])),
    _opt("--report-file", type=str, help="Job report file name (in the run dir)."),
    _opt("--log", type=click.Choice(CHOICES["log"]), help="service.log level."),
    _flag("system-core", "Keep one core for hpilot."),
    _flag("show-progress", "Live progress line on stderr."),
    _opt("--task-output", type=click.Choice(CHOICES["task_output"]),
         help="Output a job does not direct to a file: stream it into the run dir (read it with hpilot log; "
              "default), or discard it."),
    _opt("--task-output-dir", type=str, hidden=True, help="Where streamed task output goes."),
    # network interface
    _flag("net", "Enable the ZeroMQ request interface."),
    _opt("--net-port", type=int, help="Request port (implies --net)."),
    _opt("--net-port-min", type=int, help="Lowest port to try (implies --net)."),
    _opt("--net-port-max", type=int, help="Highest port to try (implies --net)."),
    _opt("--net-pub-port", type=int, help="Event publisher port (implies --net)."),
    _opt("--net-iface", type=str, help="Address to bind (default 127.0.0.1; others need the run's secret)."),
    _flag("disable-pub", "No event publisher."),
    # Slurm and node agents
    _opt("--slurm-resources-file", type=str, help="Slurm resources description file."),
    _opt("--slurm-limit-nodes-range-begin", type=int, help="First node of the allocation to use."),
    _opt("--slurm-limit-nodes-range-end", type=int, help="Node after the last one to use."),
    _flag("disable-nl", "No node launcher agents: one srun per task."),
    _opt("--nl-start-method", type=click.Choice(CHOICES["nl_start_method"]), help="How to start agents."),
    _opt("--nl-init-timeout", type=float, help="Seconds to wait for agents to register."),
    _opt("--nl-ready-threshold", "--nl-ready-treshold", "nl_ready_threshold", type=float,
         help="Fraction (0-1) of agents registered before work starts."),
    # statistics
    _flag("enable-rt-stats", "Record exact start/stop of every task (C wrapper)."),
    _opt("--wrapper-rt-stats", type=str, help="Path of another wrapper program."),
    _flag("enable-proc-stats", "Sample the process trees of running tasks."),
    _opt("--proc-stats-interval", type=float, help="Seconds between process samples."),
    # journal and resume
    _opt("--resume", type=str, metavar="PATH", help="Carry on the run in PATH (a run dir, or a wd: its newest run)."),
    _flag("journal", "Keep the run's journal (on by default; needed for --resume)."),
    # governor mode
    _flag("governor", "Schedule nothing here: partition managers register and get the work."),
    _opt("--parent", type=str, metavar="ADDRESS",
         help="Be a partition manager of the governor at ADDRESS (or its wd / run dir)."),
    _opt("--id", type=str, help="With --parent: this partition's name."),
    _opt("--tags", type=str, help="With --parent: comma-separated tags of this partition."),
    _opt("--partition-nodes", type=int, help="Governor mode: one local partition manager per N nodes."),
    _opt("--slurm-partition-nodes", type=int,
         help="Governor mode in Slurm: one partition manager (srun) per N nodes of the allocation."),
    _opt("--partition-heartbeat", type=float, help="Seconds between governor/partition heartbeats."),
    _opt("--partition-register-timeout", type=float,
         help="Seconds to wait for the partitions the governor started to register."),
    _opt("--partition-query-timeout", type=float, metavar="SECONDS",
         help="With --parent --net: a request the governor leaves unanswered this long gets an error."),
    _opt("--dry-run-tasks", type=float, metavar="SECONDS",
         help="Run no processes: every task succeeds after SECONDS (control-plane benchmarks)."),
]


def service_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for o in reversed(SERVICE_OPTIONS):
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
@click.option("--parent-pid", type=int, default=None, hidden=True)
@service_options
def service(file_flag: bool, **kw: Any) -> None:
    """Start the service with QCG-PilotJob's flags (qcg-pm-service)."""
    if file_flag and not kw.get("file_path"):
        _fail("--file needs --file-path FILE")
    _serve(kw)


@cli.command()
@click.argument("path", default=".")
@click.option("--dry-run", is_flag=True, help="Only say what the resume would do.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: machine-readable output.")
@service_options
def resume(path: str, dry_run: bool, as_json: bool, **kw: Any) -> None:
    """Carry on an interrupted run: PATH is its run dir, or a wd (its newest run)."""
    if dry_run:
        import json

        from hpilot.governor.service.resume import ResumeError, resume_plan

        try:
            plan = resume_plan(path)
        except ResumeError as e:
            _fail(str(e))
        click.echo(json.dumps(plan.to_json(), indent=2) if as_json else plan.text())
        return
    kw["resume"] = path
    kw["finish_when_done"] = True
    _serve(kw)


def _serve(kw: Dict[str, Any]) -> None:
    from hpilot.governor.service.startup import serve

    config = kw.pop("config", None)
    if any(kw.get(k) is not None for k in ("net_port", "net_port_min", "net_port_max", "net_pub_port")):
        kw["net"] = True  # as in QCG-PilotJob: a port implies --net
    try:
        opts = build_options(config, kw)
    except ConfigError as e:
        _fail(str(e))
    if opts.parent:
        from hpilot.governor.service.startup import serve_partition

        sys.exit(serve_partition(opts))
    outcome = serve(opts)
    for msg in outcome.refused:
        click.echo(f"hpilot: {msg}", err=True)
    click.echo(outcome.summary)
    sys.exit(outcome.exit_status)


from hpilot.governor.cli import client as cli_client  # noqa: E402 - the client commands join the group

cli_client.register(cli)


def main() -> None:
    try:
        code = cli.main(standalone_mode=False)
        if isinstance(code, int) and code:  # click returns Exit codes in this mode
            sys.exit(code)
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


# hpilot report / hpilot processes (issue #6)
from hpilot.governor.cli import report as cli_report  # noqa: E402

cli_report.register(cli)

# hpilot log (issue #15): task output read back from the run dir
from hpilot.governor.cli import log as cli_log  # noqa: E402

cli_log.register(cli)


if __name__ == "__main__":
    main()
