"""``hpilot run``, ``hpilot service`` and ``hpilot resume``: the commands that run work.

``hpilot run FILE`` runs a QCG-PilotJob request file to the end; ``hpilot run -- CMD``
runs a command line (with ``--array``/``--each-line``: a sweep, see sweep.py).
``hpilot service`` takes QCG-PilotJob's flags unchanged (``--file-path`` ...), with
its semantics: a file without ``finishAfterAllTasksDone`` ends the service once read.
``hpilot resume`` carries on a run in a new allocation.

Each command offers the options that make sense for it (``resume`` takes the run's
wd and journal from the run), in titled groups with their defaults (base.py).  Flags
that are off by default are plain flags (``--net``, ``--system-core``, QCG's
``--disable-pub``); ``--no-journal`` turns off the one that is on; no ``--no-disable-X``.

Exit status: 0 every job SUCCEED and every request was accepted; 1 some job did not
succeed; 2 bad input (options, config, request file, a refused request) with every
job that was accepted succeeding; 3 an internal error (a bug: see service.log); 75 the
run stopped resumably with work left (SIGTERM, SIGINT, the allocation's end, a full
disk): ``hpilot resume`` carries on.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import click
from hpilot.governor.cli.base import Command, option
from hpilot.governor.cli.sweep import SweepOptions, requests_for, sweep_options
from hpilot.governor.errors import UserError

# choices are repeated from service/config.py (CHOICES) so that this module does not import
# the config loader at start-up; tests/unit/test_cli_options.py checks that they agree
RESOURCES = ("auto", "local", "slurm")
NL_START = ("slurm", "ssh")
ENVSCHEMA = ("auto", "slurm")
REPORT_FORMAT = ("text", "json")
LOG = ("critical", "error", "warning", "info", "debug", "notset")
TASK_OUTPUT = ("stream", "discard")

RUN, SERVICE, RESUME = "run", "service", "resume"
ALL = (RUN, SERVICE, RESUME)
G_RUN = "The run"
G_RES = "Resources"
G_NET = "Network interface (QCG-PilotJob's)"
G_NL = "Slurm node agents"
G_STATS = "Statistics"
G_GOV = "Governor mode: partition managers run the work"
G_PART = "Partition manager (hpilot service --parent)"

# (declarations, keywords, group, commands that offer it)
OPTIONS: List[Tuple[Tuple[str, ...], Dict[str, Any], str, Tuple[str, ...]]] = [
    (("--config",), dict(metavar="FILE.toml", help="TOML file with any of these options (command line wins)."),
     G_RUN, ALL),
    (("--wd",), dict(metavar="DIR", help="Working directory of the run and its jobs."), G_RUN, (RUN, SERVICE)),
    (("--log",), dict(type=click.Choice(LOG), help="service.log level."), G_RUN, ALL),
    (("--report-format",), dict(type=click.Choice(REPORT_FORMAT), help="jobs.report as text or JSON lines."),
     G_RUN, ALL),
    (("--report-file",), dict(metavar="NAME", help="Job report file name (in the run dir)."), G_RUN, ALL),
    (("--progress/--no-progress", "show_progress"),
     dict(help="A live progress line on stderr [default: on when stderr is a terminal]."), G_RUN, (RUN, RESUME)),
    (("--progress/--no-progress", "show_progress"), dict(help="A live progress line on stderr."), G_RUN, (SERVICE,)),
    (("--show-progress", "qcg_show_progress"), dict(flag_value=True, hidden=True), G_RUN, ALL),  # QCG's spelling
    (("--task-output",), dict(type=click.Choice(TASK_OUTPUT),
                              help="Output a job does not direct to a file: stream it into the run dir (read it "
                                   "with hpilot log), or discard it."), G_RUN, ALL),
    (("--task-output-dir",), dict(metavar="DIR", hidden=True, help="Where streamed task output goes."), G_RUN, ALL),
    (("--no-journal", "journal"), dict(flag_value=False, help="Keep no journal (the run cannot be resumed)."),
     G_RUN, (RUN, SERVICE)),
    (("--resume",), dict(metavar="PATH", help="Carry on the run in PATH (a run dir, or a wd: its newest run)."),
     G_RUN, (RUN, SERVICE)),
    (("--dry-run-tasks",), dict(type=float, metavar="SECONDS",
                                help="Run no processes: every task succeeds after SECONDS (benchmarks)."), G_RUN, ALL),
    # resources
    (("--nodes",), dict(metavar="SPEC", help="Local resources: '4', 'n1:2', '4,2,2' or 'n1:4,n2:4' "
                                             "[default: this machine's cores]."), G_RES, ALL),
    (("--resources",), dict(type=click.Choice(RESOURCES), help="Where resources come from."), G_RES, ALL),
    (("--system-core",), dict(flag_value=True, help="Keep one core for hpilot."), G_RES, ALL),
    (("--envschema",), dict(type=click.Choice(ENVSCHEMA),
                            help="Task environment: auto (QCG_PM_*/HPILOT_*) or slurm (adds SLURM_*)."), G_RES, ALL),
    (("--stop-before",), dict(type=float, metavar="SECONDS",
                              help="In an allocation: stop resumably this long before its end (read from Slurm); "
                                   "a task whose wt cannot end before then waits for the next allocation "
                                   "[default: 60, or a tenth of the time limit if less]."), G_RES, ALL),
    (("--slurm-resources-file",), dict(metavar="FILE", help="Slurm resources description file."), G_RES, ALL),
    (("--slurm-limit-nodes-range-begin",), dict(type=int, metavar="N", help="First node of the allocation to use."),
     G_RES, ALL),
    (("--slurm-limit-nodes-range-end",), dict(type=int, metavar="N", help="Node after the last one to use."),
     G_RES, ALL),
    # network
    (("--net",), dict(flag_value=True, help="Answer requests over TCP too (every run answers local clients)."),
     G_NET, ALL),
    (("--net-port",), dict(type=int, metavar="PORT", help="Request port (implies --net)."), G_NET, ALL),
    (("--net-port-min",), dict(type=int, metavar="PORT", help="Lowest port to try (implies --net)."), G_NET, ALL),
    (("--net-port-max",), dict(type=int, metavar="PORT", help="Highest port to try (implies --net)."), G_NET, ALL),
    (("--net-pub-port",), dict(type=int, metavar="PORT", help="Event publisher port (implies --net)."), G_NET, ALL),
    (("--net-iface",), dict(metavar="ADDRESS", help="Address to bind (others than loopback need the run's secret)."),
     G_NET, ALL),
    (("--disable-pub",), dict(flag_value=True, help="No event publisher on the network."), G_NET, ALL),
    # node agents
    (("--disable-nl",), dict(flag_value=True, help="No node launcher agents: one srun per task."), G_NL, ALL),
    (("--nl-start-method",), dict(type=click.Choice(NL_START), help="How to start agents."), G_NL, ALL),
    (("--nl-init-timeout",), dict(type=float, metavar="SECONDS", help="Time for agents to register."), G_NL, ALL),
    (("--nl-ready-threshold", "--nl-ready-treshold", "nl_ready_threshold"),
     dict(type=float, metavar="FRACTION", help="Fraction (0-1) of agents registered before work starts."), G_NL, ALL),
    # statistics
    (("--enable-rt-stats",), dict(flag_value=True, help="Record exact start/stop of every task (C wrapper)."),
     G_STATS, ALL),
    (("--wrapper-rt-stats",), dict(metavar="PATH", help="Path of another wrapper program."), G_STATS, ALL),
    (("--enable-proc-stats",), dict(flag_value=True, help="Sample the process trees of running tasks."),
     G_STATS, ALL),
    (("--proc-stats-interval",), dict(type=float, metavar="SECONDS", help="Time between process samples."),
     G_STATS, ALL),
    # governor mode
    (("--governor",), dict(flag_value=True, help="Schedule nothing here: partition managers register and get "
                                                 "the work."), G_GOV, ALL),
    (("--partition-nodes",), dict(type=int, metavar="N", help="One local partition manager per N nodes."),
     G_GOV, ALL),
    (("--slurm-partition-nodes",), dict(type=int, metavar="N",
                                        help="In Slurm: one partition manager (srun) per N nodes."), G_GOV, ALL),
    (("--partition-heartbeat",), dict(type=float, metavar="SECONDS", help="Time between heartbeats."), G_GOV, ALL),
    (("--partition-register-timeout",), dict(type=float, metavar="SECONDS",
                                             help="Time for the partitions the governor started to register."),
     G_GOV, ALL),
    # partition manager
    (("--parent",), dict(metavar="ADDRESS", help="Be a partition manager of the governor at ADDRESS (or its wd / "
                                                 "run dir)."), G_PART, (SERVICE,)),
    (("--id",), dict(metavar="NAME", help="This partition's name."), G_PART, (SERVICE,)),
    (("--tags",), dict(metavar="A,B", help="Comma-separated tags of this partition."), G_PART, (SERVICE,)),
    (("--partition-query-timeout",), dict(type=float, metavar="SECONDS",
                                          help="With --net: a request the governor leaves unanswered this long "
                                               "gets an error."), G_PART, (SERVICE,)),
]


def service_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for decls, kw, group, where in reversed(OPTIONS):
            if command in where:
                f = option(*decls, group=group, **kw)(f)
        return f

    return deco


def config_defaults() -> Dict[str, Any]:
    """The defaults the help shows: configs/defaults.toml, as the service reads it (only for --help)."""
    from hpilot.governor.service.config import build_options

    return vars(build_options(None, {}))


@click.command(cls=Command, defaults=config_defaults, takes_command=True)
@click.argument("file", required=False)
@service_options(RUN)
@sweep_options
def run(file: Optional[str], **kw: Any) -> None:
    """Run the requests in FILE (a QCG-PilotJob request file), or the command after --,
    until every job is done.

    \b
      hpilot run jobs.json --nodes 8
      hpilot run --array 0-99 --cores 2 -- ./sim --seed {it}
      hpilot run --each-line params.txt -- ./sim {it}
    """
    command = click.get_current_context().meta.get("command")
    sweep = SweepOptions.from_kw(kw)
    requests = None
    if command:
        if file is not None:
            raise UserError(f"give a request file or a command after --, not both ({file!r} and the command)")
        requests = requests_for(command, sweep, os.getcwd())
    else:
        sweep.refuse_without_command()
        if file is None:
            raise UserError("nothing to run: give a request file (hpilot run FILE) or a command "
                            "(hpilot run -- CMD ARGS)")
        kw["file_path"] = file
    kw["finish_when_done"] = True
    _serve(kw, requests, watch=True)


@click.command(cls=Command, defaults=config_defaults)
@option("--file-path", group=G_RUN, metavar="FILE", help="Request file (QCG-PilotJob format).")
@option("--file", "file_flag", group=G_RUN, is_flag=True, default=False, help="Enable the file interface.")
@click.option("--parent-pid", type=int, default=None, hidden=True)
@service_options(SERVICE)
def service(file_flag: bool, **kw: Any) -> None:
    """Start the service with QCG-PilotJob's flags (qcg-pm-service)."""
    if file_flag and not kw.get("file_path"):
        raise UserError("--file needs --file-path FILE")
    _serve(kw, None, watch=False)


@click.command(cls=Command, defaults=config_defaults)
@click.argument("path", default=".")
@option("--dry-run", group=G_RUN, is_flag=True, default=False, help="Only say what the resume would do.")
@option("--json", "as_json", group=G_RUN, is_flag=True, default=False,
        help="With --dry-run: machine-readable output.")
@service_options(RESUME)
def resume(path: str, dry_run: bool, as_json: bool, **kw: Any) -> None:
    """Carry on an interrupted run: PATH is its run dir, or a wd (its newest run).

    The run's working directory, request file and journal come from the run; the
    options here say how to run what is left (the new allocation's resources, say)."""
    if dry_run:
        import json

        from hpilot.governor.service.resume import ResumeError, resume_plan

        try:
            plan = resume_plan(path)
        except ResumeError as e:
            raise UserError(str(e)) from None
        click.echo(json.dumps(plan.to_json(), indent=2) if as_json else plan.text())
        return
    kw["resume"] = path
    kw["finish_when_done"] = True
    _serve(kw, None, watch=True)


def _serve(kw: Dict[str, Any], requests: Optional[List[Any]], watch: bool) -> None:
    from hpilot.governor.service.config import ConfigError, build_options
    from hpilot.governor.service.startup import serve, serve_partition

    config = kw.pop("config", None)
    if any(kw.get(k) is not None for k in ("net_port", "net_port_min", "net_port_max", "net_pub_port")):
        kw["net"] = True  # as in QCG-PilotJob: a port implies --net
    if kw.pop("qcg_show_progress", None):
        kw["show_progress"] = True
    try:
        opts = build_options(config, kw)
    except ConfigError as e:
        raise UserError(str(e)) from None
    if opts.show_progress is None:
        # `run` on a terminal shows progress; a service (LocalManager's child, say) draws nothing unless asked
        opts = dataclasses.replace(opts, show_progress=watch and sys.stderr.isatty())
    if opts.parent:
        sys.exit(serve_partition(opts))
    outcome = serve(opts, requests, on_start=_watch_hint if watch else None)
    for msg in outcome.refused:
        click.echo(f"hpilot: {msg}", err=True)
    click.echo(outcome.summary)
    sys.exit(outcome.exit_status)


def _watch_hint(run_dir: str, wd: str) -> None:
    """The first thing ``hpilot run`` says: where the run is and how to watch it."""
    here = os.path.abspath(os.getcwd()) == os.path.abspath(wd)
    where = "" if here else f" (in {wd}, or --address {run_dir})"
    click.echo(f"hpilot: run dir {run_dir}; watch it with `hpilot top` or `hpilot status`{where}", err=True)
