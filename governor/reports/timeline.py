"""A run over time, for the plots that scale: busy cores, per-job throughput, node density.

A chart of 100,000 tasks cannot draw each one; what a user of a big run wants to see is
how full the allocation was and how fast each job went.  So these functions bin time:
each task adds its cores, for the part of each time bin it covers, to the bins of its
node group (exactly: a task that covers a third of a bin adds a third of its cores), so
a bin holds the *average* number of busy cores in it.  One pass over the tasks, with a
difference array for the bins a task covers whole: linear in tasks plus bins.  With numpy
(which matplotlib brings) the bins are filled by ``numpy.add.at``; without it in plain
Python (the same numbers: ``--json`` needs neither numpy nor matplotlib).

Node groups (:func:`node_groups`) are the partitions in governor mode, else the nodes
themselves when they are few, else runs of consecutive nodes.
"""

from __future__ import annotations

import math
from itertools import accumulate
from typing import Any, Dict, List, Optional, Tuple

from hpilot.governor.reports.rundata import RunData

MAX_GROUPS = 8
DENSITY_ROWS = 1000  # at most this many rows in a density view (nodes are grouped past it)
NODE_ROWS_FROM = 32  # from this many nodes a density row is a node; fewer: a row is a run of cores


def window(run: RunData) -> Tuple[float, float]:
    """(the start of the time axis, the span): the service's start and finish when known."""
    begins = [b for _, b, _, _ in run.intervals() if b is not None]
    ends = [e for _, _, e, _ in run.intervals() if e is not None]
    t0 = run.started if run.started is not None else min(begins, default=0.0)
    last = run.finished if run.finished is not None else max(ends, default=t0)
    last = max(last, max(ends, default=last))
    return t0, max(last - t0, 1e-3)


Interval = Tuple[int, float, float, float]  # (row, begin, end, weight)


def have_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def binned(intervals: List[Interval], rows: int, t0: float, width: float, n: int,
           use_numpy: Optional[bool] = None) -> Any:
    """``rows`` x ``n`` bins of average load: each interval adds ``weight`` times the fraction
    of each bin it covers to its row.  A numpy array when numpy can be imported (or
    ``use_numpy``), else lists of floats."""
    if use_numpy is None:
        use_numpy = have_numpy()
    if use_numpy:
        return _binned_numpy(intervals, rows, t0, width, n)
    bins = _Bins(t0, width, n)
    accs = [bins.new() for _ in range(rows)]
    for row, b, e, w in intervals:
        bins.add(accs[row], b, e, w)
    return [_Bins.values(acc) for acc in accs]


def _binned_numpy(intervals: List[Interval], rows: int, t0: float, width: float, n: int) -> Any:
    import numpy as np

    if not intervals:
        return np.zeros((rows, n))
    arr = np.array(intervals, dtype=float)
    row = arr[:, 0].astype(np.int64)
    a = np.clip((arr[:, 1] - t0) / width, 0.0, float(n))
    b = np.clip((arr[:, 2] - t0) / width, 0.0, float(n))
    w = arr[:, 3]
    keep = b > a
    row, a, b, w = row[keep], a[keep], b[keep], w[keep]
    j0 = np.minimum(a.astype(np.int64), n - 1)
    j1 = np.minimum(b.astype(np.int64), n - 1)
    part = np.zeros((rows, n))
    whole = np.zeros((rows, n + 1))
    same = j0 == j1
    np.add.at(part, (row[same], j0[same]), w[same] * (b[same] - a[same]))
    d = ~same
    rd, j0d, j1d, wd = row[d], j0[d], j1[d], w[d]
    np.add.at(part, (rd, j0d), wd * (j0d + 1 - a[d]))
    np.add.at(part, (rd, j1d), wd * (b[d] - j1d))
    np.add.at(whole, (rd, j0d + 1), wd)
    np.add.at(whole, (rd, j1d), -wd)
    return part + np.cumsum(whole, axis=1)[:, :n]


class _Bins:
    """Average load per time bin: interval by interval, exact (see the module's docstring)."""

    def __init__(self, t0: float, width: float, n: int) -> None:
        self.t0, self.width, self.n = t0, width, n

    def new(self) -> Tuple[List[float], List[float]]:
        return [0.0] * self.n, [0.0] * (self.n + 1)  # partial bins, difference array of whole bins

    def add(self, acc: Tuple[List[float], List[float]], begin: float, end: float, weight: float) -> None:
        n = self.n
        a = min(max((begin - self.t0) / self.width, 0.0), float(n))
        b = min(max((end - self.t0) / self.width, 0.0), float(n))
        if b <= a:
            return
        part, whole = acc
        j0, j1 = min(int(a), n - 1), min(int(b), n - 1)
        if j0 == j1:
            part[j0] += weight * (b - a)
            return
        part[j0] += weight * (j0 + 1 - a)
        part[j1] += weight * (b - j1)
        whole[j0 + 1] += weight
        whole[j1] -= weight

    @staticmethod
    def values(acc: Tuple[List[float], List[float]]) -> List[float]:
        part, whole = acc
        return [p + w for p, w in zip(part, accumulate(whole))]


NICE = (1, 2, 5)


def nice_width(span: float, bins: int) -> float:
    """The smallest of 1, 2, 5 x 10^k seconds (or 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1 h...)
    that cuts ``span`` into at most ``bins`` bins: round bin widths read well on an axis."""
    want = span / max(1, bins)
    minutes = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
    if want > 10:
        return float(next((m for m in minutes if m >= want), math.ceil(want / 86400) * 86400))
    k = math.floor(math.log10(want)) if want > 0 else -6
    for base in range(k, k + 2):
        for m in NICE:
            w = m * 10.0 ** base
            if w >= want * (1 - 1e-9):
                return w
    return want


def _grid(span: float, columns: Optional[int], default: int) -> Tuple[int, float]:
    """(bins, width): ``columns`` bins exactly when asked, else about ``default`` of a nice width."""
    if columns:
        n = max(1, min(columns, 4000))
        return n, span / n
    width = nice_width(span, default)
    return max(1, math.ceil(span / width - 1e-9)), width


def node_groups(run: RunData, max_groups: int = MAX_GROUPS) -> List[Tuple[str, List[str]]]:
    """(label, nodes) of each group: partitions, else nodes, else runs of consecutive nodes."""
    names = [n for n, _ in run.nodes]
    if run.partitions:
        out = [(p, [n for n in nodes if n in set(names)]) for p, nodes in run.partitions.items()]
        out = [(p, nodes) for p, nodes in out if nodes]
        seen = {n for _, nodes in out for n in nodes}
        rest = [n for n in names if n not in seen]
        if rest:
            out.append(("not in a partition", rest))
        if out:
            return out
    if len(names) <= max_groups:
        return [(n, [n]) for n in names]
    size = math.ceil(len(names) / max_groups)
    chunks = [names[i:i + size] for i in range(0, len(names), size)]
    return [(f"{c[0]}..{c[-1]} ({len(c)} nodes)", c) for c in chunks]


def busy_cores(run: RunData, columns: Optional[int] = None, max_groups: int = MAX_GROUPS) -> Dict[str, Any]:
    """Average busy cores per time bin, per node group, and the allocation's cores."""
    t0, span = window(run)
    n, width = _grid(span, columns, 600)
    groups = node_groups(run, max_groups)
    group_of = {node: i for i, (_, nodes) in enumerate(groups) for node in nodes}
    other = len(groups)  # nodes final_status does not list (an older run): still counted in the total
    intervals: List[Interval] = []
    busy_core_s = 0.0
    for _, b, e, placement in run.intervals():
        if b is None or e is None:
            continue
        for node, cores in placement:
            intervals.append((group_of.get(node, other), b, e, cores))
            busy_core_s += cores * max(0.0, e - b)
    grid = binned(intervals, len(groups) + 1, t0, width, n)
    cores_of = dict(run.nodes)
    series = [{"name": label, "nodes": len(nodes), "cores": sum(len(cores_of.get(x, [])) for x in nodes),
               "busy": [round(float(v), 4) for v in grid[i]]} for i, (label, nodes) in enumerate(groups)]
    unlisted = [float(v) for v in grid[other]]
    if any(unlisted):
        series.append({"name": "other nodes", "nodes": 0, "cores": 0, "busy": [round(v, 4) for v in unlisted]})
    total = [round(sum(vals), 4) for vals in zip(*(s["busy"] for s in series))] if series else [0.0] * n
    cores = run.total_cores
    return {"bin_s": width, "span_s": span, "times": [round(i * width, 6) for i in range(n)],
            "groups": series, "total_busy": total, "total_cores": cores, "tasks": run.task_count,
            "nodes": len(run.nodes), "busy_core_s": round(busy_core_s, 3),
            "utilization_pct": round(100.0 * busy_core_s / (cores * span), 2) if cores else None}


def throughput(run: RunData, columns: Optional[int] = None, max_jobs: int = MAX_GROUPS) -> Dict[str, Any]:
    """Tasks finished per second in each time bin, and the cumulative count, per job (the
    ``max_jobs`` biggest by task count; the others together as "other jobs")."""
    t0, span = window(run)
    n, width = _grid(span, columns, 150)
    per_job: Dict[str, List[float]] = {}
    for job, _, finish, _ in run.intervals():
        if finish is not None:
            per_job.setdefault(job, []).append(finish)
    ranked = sorted(per_job, key=lambda j: (-len(per_job[j]), j))
    shown, rest = ranked[:max_jobs], ranked[max_jobs:]
    series = [(j, per_job[j]) for j in shown]
    if rest:
        series.append((f"other jobs ({len(rest)})", [x for j in rest for x in per_job[j]]))
    out = []
    for name, finishes in series:
        counts = [0] * n
        for f in finishes:
            counts[min(n - 1, max(0, int((f - t0) / width)))] += 1
        out.append({"name": name, "tasks": len(finishes), "per_s": [round(c / width, 4) for c in counts],
                    "done": list(accumulate(counts)),
                    "peak_per_s": round(max(counts) / width, 3), "mean_per_s": round(len(finishes) / span, 3)})
    return {"bin_s": width, "span_s": span, "times": [round(i * width, 6) for i in range(n)], "jobs": out}


def _density_rows(run: RunData, max_rows: int) -> Tuple[List[str], List[int], Dict[Tuple[str, int], int]]:
    """Labels, cores per row, and (node, lane) -> row: one row per node (or per run of nodes),
    or, with few nodes, per run of cores of a node."""
    labels: List[str] = []
    size: List[int] = []
    row_of: Dict[Tuple[str, int], int] = {}
    if len(run.nodes) >= NODE_ROWS_FROM:
        per = math.ceil(len(run.nodes) / max_rows)
        for i in range(0, len(run.nodes), per):
            group = run.nodes[i:i + per]
            labels.append(group[0][0] if per == 1 else f"{group[0][0]}..{group[-1][0]}")
            size.append(sum(len(c) for _, c in group))
            for name, cores in group:
                for lane in range(len(cores)):
                    row_of[(name, lane)] = len(labels) - 1
        return labels, size, row_of
    chunk = max(1, math.ceil(run.total_cores / min(max_rows, 300)))
    for name, cores in run.nodes:
        for lo in range(0, len(cores), chunk):
            hi = min(len(cores), lo + chunk)
            labels.append(f"{name}:{cores[lo]}" if hi - lo == 1 else f"{name}:{cores[lo]}-{cores[hi - 1]}")
            size.append(hi - lo)
            for lane in range(lo, hi):
                row_of[(name, lane)] = len(labels) - 1
    return labels, size, row_of


def density(run: RunData, columns: Optional[int] = None, max_rows: int = DENSITY_ROWS,
            array: bool = False) -> Dict[str, Any]:
    """The Gantt chart's density view: for each row (a node, a run of nodes, or a run of one
    node's cores) and time bin, the fraction of its cores that were busy (``array``: the grid
    as a numpy array, for drawing, when numpy is there)."""
    t0, span = window(run)
    n, width = _grid(span, columns, 1000)
    labels, size, row_of = _density_rows(run, max_rows)
    by_node = len(run.nodes) >= NODE_ROWS_FROM
    intervals: List[Interval] = []
    if by_node:  # whole nodes: the placement is enough (no Task objects, no lanes)
        for _, b, e, placement in run.intervals():
            if b is not None and e is not None:
                for node, cores in placement:
                    row = row_of.get((node, 0))
                    if row is not None:
                        intervals.append((row, b, e, cores))
    for t in ([] if by_node else run.tasks):  # runs of a node's cores: where each task ran (its lanes)
        b, e = t.begin, t.finish
        if b is None or e is None:
            continue
        for node, _ in t.placement:
            weights: Dict[int, int] = {}
            for lane in t.lanes.get(node, ()):
                r = row_of.get((node, lane))
                if r is not None:
                    weights[r] = weights.get(r, 0) + 1
            intervals.extend((r, b, e, w) for r, w in weights.items())
    raw = binned(intervals, len(labels), t0, width, n)
    if isinstance(raw, list):
        grid: Any = [[min(1.0, v * (1.0 / size[i])) for v in values] if size[i] else [0.0] * n
                     for i, values in enumerate(raw)]
    else:
        import numpy as np

        grid = np.minimum(1.0, raw / np.maximum(1, np.array(size, dtype=float))[:, None])
        if not array:
            grid = grid.tolist()
    bands = []  # governor mode: the rows of each partition (rows by node only)
    if by_node and run.partitions:
        for name, nodes in run.partitions.items():
            rows_of = [row_of[(n, 0)] for n in nodes if (n, 0) in row_of]
            if rows_of:
                bands.append({"name": name, "first": min(rows_of), "last": max(rows_of)})
    return {"rows": labels, "row_cores": size, "bin_s": width, "span_s": span, "grid": grid, "partitions": bands,
            "by": "node" if by_node else "cores", "tasks": run.task_count, "nodes": len(run.nodes),
            "cores": run.total_cores, "jobs": sorted({job for job, _, _, _ in run.intervals()})}

