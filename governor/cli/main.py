"""The ``hpilot`` command: a table of subcommands, each imported only when it runs.

``run``/``service``/``resume`` are in serve.py, the client commands in client.py
(``top`` in top.py), the run-dir readers in report.py.  ``hpilot status`` therefore
imports click, ZeroMQ and client.py, and nothing of the service (bench/cli.py
measures its start-up against a bare Python).

Exit status everywhere: 0 success; 1 some job did not succeed; 2 bad input (a bad
flag, config, request file or job name, a refused request, no service to ask);
3 an internal error (a bug: a one-line message, the traceback in the run's
service.log); 75 a run stopped resumably (a signal, the allocation's end, a full disk:
``hpilot resume`` carries on); 124 ``wait --timeout`` ran out; 130 interrupted (Ctrl-C) a
client command.
"""

from __future__ import annotations

import sys
from typing import Dict, Tuple

import click
from hpilot.governor.cli.base import LazyGroup
from hpilot.governor.errors import UserError

_SERVE = "hpilot.governor.cli.serve"
_CLIENT = "hpilot.governor.cli.client"
_REPORT = "hpilot.governor.cli.report"
COMMANDS: Dict[str, Tuple[str, str, str]] = {
    "run": (_SERVE, "run", "Run a request file, or a command line (a sweep with --array), to the end."),
    "service": (_SERVE, "service", "Start the service with QCG-PilotJob's flags (qcg-pm-service)."),
    "resume": (_SERVE, "resume", "Carry on an interrupted run in a new allocation."),
    "top": ("hpilot.governor.cli.top", "top", "A live dashboard: jobs, rates, cores in use, failures, ETA."),
    "status": (_CLIENT, "status", "The run and its jobs: iterations by outcome, cores in use."),
    "list": (_CLIENT, "list_jobs", "All jobs, optionally only those in some states."),
    "info": (_CLIENT, "info", "One job: state, counts, where it ran, history, iterations."),
    "submit": (_CLIENT, "submit", "Submit jobs: a request file, stdin (-), or a command line after --."),
    "wait": (_CLIENT, "wait", "Wait for jobs to finish, counting iterations."),
    "cancel": (_CLIENT, "cancel", "Cancel jobs (running iterations are killed)."),
    "remove": (_CLIENT, "remove", "Forget finished jobs."),
    "resources": (_CLIENT, "resources", "Cores and nodes: total, used, free."),
    "finish": (_CLIENT, "finish", "Stop the service."),
    "report": (_REPORT, "report", "Reports of a run: stats, jobs, tasks, rusage, gantt, ..."),
    "processes": (_REPORT, "processes", "The process tree of a task, or a job's applications."),
    "log": ("hpilot.governor.cli.log", "log", "The output a task wrote (also after the run, off the allocation)."),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hpilot")
def cli() -> None:
    """hpilot: many tasks inside one allocation (QCG-PilotJob compatible)."""


# Client commands leave through os._exit once their output is flushed: they hold no file
# and no child, and the interpreter's teardown (every module, ZeroMQ's I/O thread) would
# cost a client command a sixth of its run time (bench/cli.py).
QUICK_EXIT = frozenset(n for n, (module, _, _) in COMMANDS.items() if module == _CLIENT) | {"top", "log"}


def main() -> None:
    quick = len(sys.argv) > 1 and sys.argv[1] in QUICK_EXIT
    try:
        _main()
    except SystemExit as e:
        if not quick:
            raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
        _exit(code)
    if quick:
        _exit(0)


def _exit(code: int) -> None:
    import contextlib
    import os

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (| head): nothing more to say
            stream.flush()
    os._exit(code)


def _main() -> None:
    try:
        code = cli.main(standalone_mode=False)
        if isinstance(code, int) and code:  # click returns Exit codes in this mode
            sys.exit(code)
    except UserError as e:
        click.echo(f"hpilot: error: {e}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("hpilot: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as e:  # a bug: the user gets one line, the log gets the traceback
        import logging

        logging.getLogger("hpilot").exception("internal error")
        click.echo(f"hpilot: internal error: {type(e).__name__}: {e} (details in the run's service.log)",
                   err=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
