"""Resources of a Slurm allocation: exactly the nodes and CPU ids Slurm gave this job.

Two sources, one parser each, all pure (text in, :class:`ResourceSet` out):

- the environment: ``SLURM_JOB_NODELIST`` (full hostlist syntax, ``n[1-3,7],gpu[01-02]``)
  and ``SLURM_JOB_CPUS_PER_NODE`` (``24(x2),12``) give node names and CPU *counts*;
- ``scontrol show -o --detail job ID`` gives the CPU *ids* per node
  (``Nodes=n[1-2] CPU_IDs=0-3,8 Mem=...``), so tasks can be bound to the very CPUs Slurm
  allocated, also on a node shared with other jobs.  ``--slurm-resources-file`` holds
  the same text (QCG-PilotJob's use: describe an allocation without being in one).

When the ids are known they win; otherwise a node with N CPUs gets ids 0..N-1.  Either way
``binding`` is on: the agent on each node binds a task to its CPUs, and maps ids that the node
does not really have (an oversubscribed test node) onto the ones it has.
The only I/O here is :func:`scontrol_job`, a thin shell around ``scontrol``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from hpilot.partition.resources import Node, ResourceError, ResourceSet, reserve_system_core


def in_allocation(env: Mapping[str, str]) -> bool:
    """``--resources auto`` picks Slurm when this process runs inside an allocation."""
    return bool(env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")) and bool(
        env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST"))


# ---- hostlists ----


def expand_hostlist(expr: str, what: str = "SLURM_JOB_NODELIST") -> List[str]:
    """``n[1-3,7],gpu[01-02]`` -> ``n1 n2 n3 n7 gpu01 gpu02``; also ``a[1-2]b[3-4]`` (every combination)."""
    text = expr.strip()
    if not text:
        raise ResourceError(f"{what} is empty")
    out: List[str] = []
    for item in _split_top(text, what):
        out.extend(_expand_one(item, what, expr))
    if len(set(out)) != len(out):
        dup = next(n for n in out if out.count(n) > 1)
        raise ResourceError(f"{what}={expr!r}: node {dup} is listed twice")
    return out


def _split_top(text: str, what: str) -> List[str]:
    """Split at commas outside brackets."""
    items, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
            if depth > 1:
                raise ResourceError(f"{what}={text!r}: nested '['")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ResourceError(f"{what}={text!r}: ']' without '['")
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    if depth != 0:
        raise ResourceError(f"{what}={text!r}: '[' without ']'")
    items.append(cur)
    for i, item in enumerate(items):
        if not item.strip():
            raise ResourceError(f"{what}={text!r}: empty host name at position {i + 1}")
    return [i.strip() for i in items]


_PART = re.compile(r"([^\[\]]*)(?:\[([^\]]*)\])?")


def _expand_one(item: str, what: str, expr: str) -> List[str]:
    names = [""]
    pos = 0
    while pos < len(item):
        m = _PART.match(item, pos)
        assert m is not None and m.end() > pos
        prefix, ranges = m.group(1), m.group(2)
        if any(c.isspace() for c in prefix):
            raise ResourceError(f"{what}={expr!r}: a host name may not contain spaces ({item!r})")
        names = [n + prefix for n in names]
        if ranges is not None:
            names = [n + s for n in names for s in _range_suffixes(ranges, what, expr)]
        pos = m.end()
    return names


def _range_suffixes(ranges: str, what: str, expr: str) -> List[str]:
    out: List[str] = []
    for part in ranges.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ResourceError(f"{what}={expr!r}: [{ranges}] is not a list of numbers or ranges like 1-3,7")
        if not sep:
            out.append(lo)
            continue
        a, b = int(lo), int(hi)
        if b < a:
            raise ResourceError(f"{what}={expr!r}: range {part} goes backwards")
        if b - a > 100000:
            raise ResourceError(f"{what}={expr!r}: range {part} is implausibly large")
        width = len(lo) if lo.startswith("0") else 0
        out.extend(str(i).zfill(width) for i in range(a, b + 1))
    return out


# ---- CPU counts and ids ----


def parse_cpus_per_node(text: str, what: str = "SLURM_JOB_CPUS_PER_NODE") -> List[int]:
    """``24(x2),12`` -> ``[24, 24, 12]``."""
    out: List[int] = []
    if not text.strip():
        raise ResourceError(f"{what} is empty")
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:\(x(\d+)\))?\s*", part)
        if m is None:
            raise ResourceError(f"{what}={text!r}: {part!r} is not COUNT or COUNT(xREPEAT), e.g. 24(x2),12")
        count, rep = int(m.group(1)), int(m.group(2) or 1)
        if count < 1 or rep < 1:
            raise ResourceError(f"{what}={text!r}: {part!r}: counts must be at least 1")
        out.extend([count] * rep)
    return out


def parse_id_list(text: str, what: str) -> Tuple[int, ...]:
    """``0-3,8`` -> ``(0, 1, 2, 3, 8)`` (scontrol's CPU_IDs)."""
    ids: List[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ResourceError(f"{what}: CPU_IDs={text!r} is not a list of ids or ranges like 0-3,8")
        ids.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    if len(set(ids)) != len(ids):
        raise ResourceError(f"{what}: CPU_IDs={text!r} repeats an id")
    return tuple(ids)


def parse_scontrol_job(text: str, what: str = "scontrol show job") -> Dict[str, Tuple[int, ...]]:
    """``scontrol show -o --detail job`` -> node name -> CPU ids, in the allocation's order."""
    found = re.findall(r"(?:^|\s)Nodes=(\S+)\s+CPU_IDs=(\S+)", text)
    if not found:
        raise ResourceError(f"{what}: no 'Nodes=... CPU_IDs=...' entries found; expected the output of "
                            "`scontrol show -o --detail job $SLURM_JOB_ID`")
    out: Dict[str, Tuple[int, ...]] = {}
    for nodes, ids in found:
        cpus = parse_id_list(ids, what)
        for name in expand_hostlist(nodes, f"{what}: Nodes"):
            if name in out:
                raise ResourceError(f"{what}: node {name} appears twice")
            out[name] = cpus
    return out


# ---- putting it together ----


def slurm_resources(
    env: Mapping[str, str],
    scontrol_text: Optional[str] = None,
    limit_begin: Optional[int] = None,
    limit_end: Optional[int] = None,
    system_core: bool = False,
    source_name: str = "scontrol show job",
) -> ResourceSet:
    """The allocation as a ResourceSet (pure).

    ``scontrol_text`` alone is enough (a resources file); with the environment as well, the
    environment decides which nodes and how many CPUs, and the text adds the ids.
    ``limit_begin``/``limit_end`` keep nodes[begin:end] (0-based, end excluded), QCG-PilotJob's
    ``--slurm-limit-nodes-range-begin/end``.
    """
    ids = parse_scontrol_job(scontrol_text, source_name) if scontrol_text is not None else {}
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    nodes: List[Node]
    if nodelist:
        names = expand_hostlist(nodelist, "SLURM_JOB_NODELIST")
        cpus_text = env.get("SLURM_JOB_CPUS_PER_NODE")
        if cpus_text:
            counts = parse_cpus_per_node(cpus_text)
            if len(counts) != len(names):
                raise ResourceError(f"SLURM_JOB_CPUS_PER_NODE={cpus_text!r} describes {len(counts)} node(s), "
                                    f"SLURM_JOB_NODELIST={nodelist!r} has {len(names)}")
        elif ids:
            counts = [len(ids.get(n, ())) for n in names]
        else:
            raise ResourceError("SLURM_JOB_CPUS_PER_NODE is not set: cannot tell how many CPUs each node has")
        nodes = []
        for name, count in zip(names, counts):
            known = ids.get(name)
            if known is not None and len(known) == count:
                nodes.append(Node(name, known))
            elif known is not None and len(known) > count:
                nodes.append(Node(name, known[:count]))
            else:
                nodes.append(Node(name, tuple(range(count))))
    elif ids:
        nodes = [Node(name, cpus) for name, cpus in ids.items()]
    else:
        raise ResourceError("not inside a Slurm allocation: SLURM_JOB_NODELIST is not set "
                            "(use --resources local, or --slurm-resources-file)")
    nodes = limit_range(nodes, limit_begin, limit_end)
    return reserve_system_core(ResourceSet(tuple(nodes), binding=True, source="slurm"), system_core)


def limit_range(nodes: Sequence[Node], begin: Optional[int], end: Optional[int]) -> List[Node]:
    if begin is None and end is None:
        return list(nodes)
    b = 0 if begin is None else begin
    e = len(nodes) if end is None else end
    if b >= len(nodes) or e <= b:
        raise ResourceError(f"--slurm-limit-nodes-range-begin/end {b}..{e} selects no node of the "
                            f"{len(nodes)} in the allocation (begin is 0-based, end is excluded)")
    if e > len(nodes):
        raise ResourceError(f"--slurm-limit-nodes-range-end {e} is past the last node "
                            f"(the allocation has {len(nodes)})")
    return list(nodes[b:e])


# ---- the thin shell ----


def scontrol_job(job_id: str, timeout: float = 15.0) -> Optional[str]:
    """``scontrol show -o --detail job ID``'s text, or None when it cannot be had (then ids are 0..N-1)."""
    exe = shutil.which("scontrol")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "show", "-o", "--detail", "job", job_id], capture_output=True,
                              text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0 or "CPU_IDs=" not in proc.stdout:
        return None
    return proc.stdout


def read_resources_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ResourceError(f"--slurm-resources-file {path}: cannot read: {e.strerror}") from None


# ---- the allocation's end ----

_TIME_FIELD = re.compile(r"(?:^|\s)(StartTime|EndTime)=(\S+)")


def allocation_window(text: str) -> Optional[Tuple[float, float]]:
    """(start, end) of the job, from ``scontrol show -o job`` text, as epoch seconds in this
    machine's time zone (scontrol prints local time); None when it has no end (no time limit)."""
    import time as _time

    found: Dict[str, float] = {}
    for key, value in _TIME_FIELD.findall(text):
        try:
            found[key] = _time.mktime(_time.strptime(value, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:  # "Unknown", "None", "N/A": no limit
            continue
    if "EndTime" not in found:
        return None
    return found.get("StartTime", found["EndTime"]), found["EndTime"]


def job_window(job_id: str, timeout: float = 15.0) -> Optional[Tuple[float, float]]:
    """(start, end) of a running Slurm job, asked of ``scontrol`` (None: unknown or unlimited)."""
    exe = shutil.which("scontrol")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "show", "-o", "job", job_id], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return allocation_window(proc.stdout) if proc.returncode == 0 else None
