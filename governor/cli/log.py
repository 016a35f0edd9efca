"""``hpilot log JOB[:IT] [--stderr]``: the output a task wrote, read back from its run directory.

Tasks whose job names no ``stdout``/``stderr`` file have their output streamed into a few
files per run (``<run dir>/output/*.out``, one per launcher: see ``launcher/output.py``).
This command reads them, so it works while the run goes on (output reaches the files
within half a second), after it, off the allocation, and across a resume (a resumed run
adds its own files to the same directory; a task that ran twice shows both attempts).
It needs no running service.
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Tuple

import click
from hpilot.governor.errors import UserError


def _split(target: str) -> Tuple[str, Optional[int]]:
    """``sweep:3`` -> ("sweep", 3); ``sweep`` -> ("sweep", None)."""
    m = re.fullmatch(r"(.+):(-?\d+)", target)
    return (m.group(1), int(m.group(2))) if m else (target, None)


def _wanted(job: str, it: Optional[int]) -> Callable[[str], bool]:
    if it is not None:
        name = f"{job}:{it}"
        return lambda task: task == name
    prefix = job + ":"
    return lambda task: task == job or (task.startswith(prefix) and task[len(prefix):].lstrip("-").isdigit())


def _order(task: str) -> Tuple[int, str]:
    _, _, it = task.rpartition(":")
    return (int(it), task) if it.lstrip("-").isdigit() else (0, task)


def _jobs_in_journal(run_dir: str) -> Dict[str, Dict[str, Any]]:
    """The job descriptions the run accepted (from its journal), to explain an empty answer."""
    from hpilot.governor.service.journal import FILE, _parse

    jobs: Dict[str, Dict[str, Any]] = {}
    try:
        with open(os.path.join(run_dir, FILE), "rb") as f:
            data = f.read()
    except OSError:
        return jobs
    for line in data.split(b"\n"):
        if line[:2] != b"J ":
            continue
        parsed = _parse(line)
        if parsed and isinstance(parsed[1], dict) and parsed[1].get("t") == "submit":
            for job in parsed[1].get("jobs", []):
                if isinstance(job, dict) and isinstance(job.get("name"), str):
                    jobs[job["name"]] = job
    return jobs


def _nothing(run_dir: str, job: str, it: Optional[int], stderr: bool, streamed: bool) -> str:
    """Why there is no output to show, as precisely as the run dir can tell."""
    what = f"{job}:{it}" if it is not None else job
    channel = "stderr" if stderr else "stdout"
    if not streamed:
        return (f"{what}: no streamed output in {run_dir} (the run kept no output/: it was made with "
                "--task-output discard, or by an older hpilot)")
    known = _jobs_in_journal(run_dir)
    spec = known.get(job)
    if known and spec is None:
        near = ", ".join(sorted(known)[:10])
        raise UserError(f"{what}: no job {job!r} in the run {run_dir} (its jobs: {near})")
    execution = spec.get("execution", {}) if isinstance(spec, dict) else {}
    named = execution.get(channel) if isinstance(execution, dict) else None
    if named:
        return f"{what}: its job writes {channel} to {named!r} (execution.{channel}): that file has it"
    return f"{what}: nothing on {channel} (it wrote nothing there, has not run yet, or its output is not flushed yet)"


@click.command("log")
@click.argument("target", metavar="JOB[:IT]")
@click.option("--stderr", is_flag=True, help="Show what the task wrote on stderr (default: stdout).")
@click.option("--run", "rundir", default=".", show_default=True,
              help="The run directory, or a working directory (its newest run).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (every attempt, both streams).")
def log(target: str, stderr: bool, rundir: str, as_json: bool) -> None:
    """The output of task JOB:IT (or of every iteration of JOB), kept in the run directory.

    Works during the run, after it and across a resume; a task that ran more than once shows
    each attempt.  Jobs that name a stdout/stderr file keep writing there, as in QCG-PilotJob.
    """
    from hpilot.governor.reports.rundata import RunDirError, resolve
    from hpilot.launcher.output import output_dir, read_output

    try:
        run_dir = resolve(rundir)
    except RunDirError as e:
        raise UserError(str(e)) from None
    job, it = _split(target)
    out_dir = output_dir(run_dir)
    by_task, notes = read_output(out_dir, _wanted(job, it))
    for note in notes:
        click.echo(f"hpilot log: note: {note}", err=True)
    if as_json:
        click.echo(json.dumps({"run_dir": run_dir, "tasks": [
            {"task": task, "attempts": [{"started": a.start, "file": os.path.basename(a.file),
                                          "stdout": a.text("o").decode("utf-8", errors="replace"),
                                          "stderr": a.text("e").decode("utf-8", errors="replace")}
                                         for a in attempts]}
            for task, attempts in sorted(by_task.items(), key=lambda kv: _order(kv[0]))]}, indent=1))
        return
    kind = "e" if stderr else "o"
    shown = [(task, attempts) for task, attempts in sorted(by_task.items(), key=lambda kv: _order(kv[0]))
             if any(a.text(kind) for a in attempts)]
    if not shown:
        click.echo(f"hpilot log: {_nothing(run_dir, job, it, stderr, os.path.isdir(out_dir))}", err=True)
        return
    _write(shown, kind, headers=it is None and any(task != job for task, _ in shown))


def _write(shown: List[Tuple[str, List[Any]]], kind: str, headers: bool) -> None:
    out = sys.stdout.buffer
    for task, attempts in shown:
        with_text = [a for a in attempts if a.text(kind)]
        for n, a in enumerate(with_text, 1):
            if headers or len(with_text) > 1:
                when = datetime.fromtimestamp(a.start).strftime("%Y-%m-%d %H:%M:%S")
                more = f", attempt {n} of {len(with_text)}" if len(with_text) > 1 else ""
                out.write(f"==> {task}{more} (started {when}) <==\n".encode())
            data = a.text(kind)
            out.write(data)
            if headers and not data.endswith(b"\n"):
                out.write(b"\n")
    out.flush()


def register(cli: click.Group) -> None:
    cli.add_command(log)
