"""A sweep from the command line, with HyperQueue's conventions: no JSON to write.

    hpilot run -- ./sim --fast                      # one task
    hpilot run --array 0-99 -- ./sim --seed {it}    # 100 tasks, {it} = 0..99
    hpilot run --each-line params.txt -- ./sim {it} # one task per non-empty line, {it} = the line
    hpilot submit --array 1-100:10 --cores 4 -- ./sim {it}   # the same into a running hpilot

``--array`` takes HyperQueue's ranges: ``0-99``, ``1,3,7-9``, ``0-100:10`` (a step).
Placeholders are ``{name}`` for QCG-PilotJob's variables (``{it}``, ``{jname}``,
``{uniq}``, ``{ncores}``, ``{nnodes}``, ``{nlist}``, ``{root_wd}``, ...): they become
``${name}`` in the job (``{it}`` is the task's number or line: ``${itval}`` when the
iterations are a list of values), which is a plain QCG-PilotJob job description, so everything a
request file can do to it (resume, reports, ``hpilot info``) works the same.  Other
braces (``awk '{print $1}'``) are left alone.  The command runs as given, without a
shell (``-- bash -c '...'`` for one), in the directory where hpilot was typed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Callable, Collection, Dict, List, Optional, Union

from hpilot.governor.cli.base import option
from hpilot.governor.errors import UserError

GROUP = "A command line instead of a request file (after --)"
MAX_ARRAY = 10_000_000


def sweep_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for o in reversed([
        option("--array", "array", group=GROUP, metavar="RANGES",
               help="One task per number: 0-99, 1,3,7-9 or 0-100:10 (a step); {it} is the number."),
        option("--each-line", "each_line", group=GROUP, metavar="FILE",
               help="One task per non-empty line of FILE; {it} is the line."),
        option("--cores", "cores", group=GROUP, type=int, metavar="N", help="Cores per task [default: 1]."),
        option("--name", "name", group=GROUP, help="Job name [default: the program's name]."),
        option("--wt", "wt", group=GROUP, metavar="TIME", help="Wall time per task: 90s, 1h30m, 01:30:00."),
        option("--stdout", "stdout", group=GROUP, metavar="PATH", help="Each task's stdout (placeholders work)."),
        option("--stderr", "stderr", group=GROUP, metavar="PATH", help="Each task's stderr (placeholders work)."),
    ]):
        f = o(f)
    return f


KEYS = ("array", "each_line", "cores", "name", "wt", "stdout", "stderr")


class SweepOptions:
    """The sweep options of a command line (a plain class: nothing more to import at start-up)."""

    def __init__(self, array: Optional[str] = None, each_line: Optional[str] = None, cores: Optional[int] = None,
                 name: Optional[str] = None, wt: Optional[str] = None, stdout: Optional[str] = None,
                 stderr: Optional[str] = None) -> None:
        self.array, self.each_line, self.cores, self.name = array, each_line, cores, name
        self.wt, self.stdout, self.stderr = wt, stdout, stderr

    @classmethod
    def from_kw(cls, kw: Dict[str, Any]) -> SweepOptions:
        """Take the sweep options out of a command's keyword arguments."""
        return cls(**{k: kw.pop(k, None) for k in KEYS})

    def refuse_without_command(self) -> None:
        given = [f"--{k.replace('_', '-')}" for k in KEYS if getattr(self, k) is not None]
        if given:
            raise UserError(f"{', '.join(given)}: these describe a command line given after -- "
                            "(e.g. hpilot run --array 0-9 -- ./sim {it}); a request file describes its own jobs")


def parse_array(text: str) -> Union[range, List[int]]:
    """HyperQueue's ``--array``: ``0-99``, ``1,3,7-9``, ``0-100:10``; a range when contiguous."""
    numbers: List[int] = []
    parts = [p.strip() for p in text.split(",")]
    for part in parts:
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            raise UserError(f"--array {text}: {part!r} is not a number, a range A-B or A-B:STEP")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3)) if m.group(3) is not None else 1
        if b < a or step < 1:
            raise UserError(f"--array {text}: {part!r} is empty (the end is before the start, or the step is 0)")
        if len(parts) == 1 and step == 1:
            return range(a, b + 1)
        numbers.extend(range(a, b + 1, step))
        if len(numbers) > MAX_ARRAY:
            raise UserError(f"--array {text}: more than {MAX_ARRAY:,} tasks")
    if len(set(numbers)) != len(numbers):
        raise UserError(f"--array {text}: a number is given twice")
    return numbers


def _placeholders(text: str, values: bool = False) -> str:
    """``{name}`` -> ``${name}`` for QCG-PilotJob's variables.  ``{it}`` is the task's number or
    line: with a list of values (``--each-line``, ``--array 1,5``) that is QCG's ``${itval}``."""
    from hpilot.partition.variables import KNOWN_VARIABLES

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in KNOWN_VARIABLES:
            return str(m.group(0))
        return "${itval}" if name == "it" and values else f"${{{name}}}"

    return re.sub(r"\{(\w+)\}", sub, text)


def _lines(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.rstrip("\r\n") for ln in f]
    except OSError as e:
        raise UserError(f"--each-line {path}: cannot read it: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"--each-line {path}: not UTF-8 text: {e}") from None
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise UserError(f"--each-line {path}: the file has no non-empty line")
    return lines


def _free_name(base: str, taken: Collection[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def job_from_command(argv: List[str], o: SweepOptions, wd: str, taken: Collection[str] = ()) -> Dict[str, Any]:
    """A QCG-PilotJob job description of ``argv`` with the sweep options."""
    if o.array is not None and o.each_line is not None:
        raise UserError("--array and --each-line: give one of them")
    base = o.name or re.sub(r"[^\w.-]", "_", os.path.basename(argv[0])) or "task"
    iteration: Optional[Dict[str, Any]] = None
    if o.array is not None:
        numbers = parse_array(o.array)
        iteration = ({"start": numbers.start, "stop": numbers.stop} if isinstance(numbers, range)
                     else {"values": [str(n) for n in numbers]})
    elif o.each_line is not None:
        iteration = {"values": _lines(o.each_line)}
    values = iteration is not None and "values" in iteration
    execution: Dict[str, Any] = {"exec": _placeholders(argv[0], values),
                                 "args": [_placeholders(a, values) for a in argv[1:]], "wd": wd}
    for key in ("stdout", "stderr"):
        value = getattr(o, key)
        if value is not None:
            execution[key] = _placeholders(value, values)
    job: Dict[str, Any] = {"name": o.name or _free_name(base, taken), "execution": execution}
    if o.cores is not None:
        if o.cores < 1:
            raise UserError(f"--cores must be at least 1, not {o.cores}")
        job["resources"] = {"numCores": {"exact": o.cores}}
    if o.wt is not None:
        job.setdefault("resources", {})["wt"] = o.wt
    if iteration is not None:
        job["iteration"] = iteration
    return job


def jobs_from_file(path: str) -> List[Dict[str, Any]]:
    """The jobs of a request file, a submit request or a list of jobs; ``-`` reads stdin."""
    from hpilot.governor.api.jobs import Jobs, QCGPJMAError, _jobs_in

    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise UserError(f"{where}: cannot read it: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{where}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    try:
        jobs = _jobs_in(data)
        checked = Jobs()
        for job in jobs:  # each job checked here first: one clear line before anything is sent
            checked.add_std(job)
    except QCGPJMAError as e:
        raise UserError(f"{where}: {e}") from None
    if not jobs:
        raise UserError(f"{where}: no job in it")
    return jobs


def requests_for(argv: List[str], o: SweepOptions, wd: str) -> List[Dict[str, Any]]:
    """``hpilot run -- CMD``: the request list of a one-job run."""
    return [{"request": "submit", "jobs": [job_from_command(argv, o, wd)]},
            {"request": "control", "command": "finishAfterAllTasksDone"}]
