"""``gantt`` and ``gantt-gaps``: one row per core, grouped and labelled by node.

Why it is fast: every bar of the chart goes into ONE ``PolyCollection`` (a task on
consecutive cores is one rectangle), so 2000 tasks on 960 cores draw in about a
second, where one patch per bar (QCG-PilotJob's way) takes minutes.  The figure's
size follows the content (rows, tasks per row) within limits that keep it readable;
:func:`figure_size` is the rule, and the saved image has exactly that size.

The data (:func:`gantt_data`, :func:`gaps_data`) needs no matplotlib, so ``--json``
works without it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from hpilot.governor.reports.rundata import RunData

DPI = 100
LEFT_IN, RIGHT_IN, TOP_IN, BOTTOM_IN, LEGEND_IN = 1.4, 0.3, 0.6, 0.7, 2.2
MAX_LEGEND = 20
INSTALL_HINT = ("the gantt and gantt-gaps plots need matplotlib: pip install 'hpilot[report]' "
                "(or pip install matplotlib); --json prints the data without it")


class NoMatplotlib(Exception):
    pass


def rows_of(run: RunData) -> List[Tuple[str, int]]:
    """(node, core id) for each row, top to bottom, in the order of the run's nodes."""
    return [(name, core) for name, cores in run.nodes for core in cores]


def _row_index(run: RunData) -> Dict[Tuple[str, int], int]:
    out: Dict[Tuple[str, int], int] = {}
    i = 0
    for name, cores in run.nodes:
        for lane in range(len(cores)):
            out[(name, lane)] = i
            i += 1
    return out


def _runs(rows: List[int]) -> List[Tuple[int, int]]:
    """Consecutive row numbers as (first, count) runs."""
    out: List[Tuple[int, int]] = []
    for r in sorted(rows):
        if out and out[-1][0] + out[-1][1] == r:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((r, 1))
    return out


def gantt_data(run: RunData) -> Dict[str, Any]:
    t0 = run.started if run.started is not None else min((t.begin for t in run.tasks if t.begin), default=0.0)
    index = _row_index(run)
    bars = []
    for t in run.tasks:
        b, e = t.begin, t.finish
        if b is None or e is None:
            continue
        for node, lanes in t.lanes.items():
            cores = dict(run.nodes).get(node, [])
            for first, count in _runs([index[(node, lane)] for lane in lanes if (node, lane) in index]):
                lane0 = first - index[(node, 0)]
                bars.append({"task": t.task_id, "job": t.job, "node": node, "row": first, "rows": count,
                             "cores": cores[lane0:lane0 + count], "start": round(b - t0, 6),
                             "end": round(e - t0, 6), "exit_code": t.exit_code})
    ends: List[float] = [float(b["end"]) for b in bars]  # type: ignore[arg-type]
    span = (run.finished - t0) if run.finished is not None else max(ends, default=0.0)
    return {"rows": [f"{n}:{c}" for n, c in rows_of(run)], "span_s": round(span, 6), "bars": bars,
            "jobs": sorted({b["job"] for b in bars}), "source": run.task_source}


def gaps_data(run: RunData) -> Dict[str, Any]:
    """Idle intervals of each core between the service's start and finish."""
    g = gantt_data(run)
    span = g["span_s"]
    busy: Dict[int, List[Tuple[float, float]]] = {}
    for b in g["bars"]:
        for r in range(b["row"], b["row"] + b["rows"]):
            busy.setdefault(r, []).append((b["start"], b["end"]))
    gaps = []
    idle_total = 0.0
    for r, label in enumerate(g["rows"]):
        t = 0.0
        for s, e in sorted(busy.get(r, [])) + [(span, span)]:
            if s > t:
                gaps.append({"row": r, "core": label, "start": round(t, 6), "end": round(s, 6)})
                idle_total += s - t
            t = max(t, e)
    return {"rows": g["rows"], "span_s": span, "gaps": gaps, "idle_core_s": round(idle_total, 6)}


def figure_size(nrows: int, per_row: int, legend: bool) -> Tuple[float, float]:
    """Inches: 0.25 in per row up to 24 rows, then the chart grows slowly (3 px per row
    at 960 rows) up to 40 in; wider when rows hold many tasks."""
    nrows = max(1, nrows)
    plot_h = nrows * 0.25 if nrows <= 24 else min(40.0, max(6.0, nrows * 0.03))
    plot_w = min(30.0, max(8.0, 4.0 + per_row * 0.12))
    w = LEFT_IN + plot_w + RIGHT_IN + (LEGEND_IN if legend else 0.0)
    return round(w, 2), round(TOP_IN + plot_h + BOTTOM_IN, 2)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NoMatplotlib(INSTALL_HINT) from None
    return plt


def _frame(plt: Any, run: RunData, rows: List[str], per_row: int, legend: bool, title: str) -> Tuple[Any, Any]:
    w, h = figure_size(len(rows), per_row, legend)
    fig = plt.figure(figsize=(w, h), dpi=DPI)
    right = w - RIGHT_IN - (LEGEND_IN if legend else 0.0)
    ax = fig.add_axes((LEFT_IN / w, BOTTOM_IN / h, (right - LEFT_IN) / w, (h - TOP_IN - BOTTOM_IN) / h))
    n = max(1, len(rows))
    ax.set_ylim(n, 0)
    ax.set_xlabel("seconds since the service started")
    ax.set_title(title, fontsize=10)
    # labels: every core when few, else one per node (thinned when nodes are many)
    if n <= 64:
        ax.set_yticks([i + 0.5 for i in range(n)])
        ax.set_yticklabels(rows, fontsize=max(5, min(9, int(400 / n))))
    else:
        pos, labels, start = [], [], 0
        for name, cores in run.nodes:
            pos.append(start + len(cores) / 2)
            labels.append(name)
            start += len(cores)
            ax.axhline(start, color="0.8", linewidth=0.4)
        step = max(1, len(pos) // 60)
        ax.set_yticks(pos[::step])
        ax.set_yticklabels(labels[::step], fontsize=7)
        ax.set_ylabel("nodes (one row per core)")
    ax.grid(axis="x", color="0.9", linewidth=0.5)
    ax.set_axisbelow(True)
    return fig, ax


def _verts(items: List[Tuple[float, float, int, int]]) -> Any:
    import numpy as np

    a = np.array(items, dtype=float).reshape(-1, 4)
    s, e, r, k = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    e = np.maximum(e, s + 1e-4)  # a /bin/true still shows
    pad = np.minimum(0.1, k * 0.1)
    return np.stack([np.stack([s, r + pad], 1), np.stack([e, r + pad], 1),
                     np.stack([e, r + k - pad], 1), np.stack([s, r + k - pad], 1)], 1)


def gantt(run: RunData, out: str) -> Dict[str, Any]:
    plt = _pyplot()
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    data = gantt_data(run)
    bars, jobs = data["bars"], data["jobs"]
    per_row: Dict[int, int] = {}
    for b in bars:
        per_row[b["row"]] = per_row.get(b["row"], 0) + 1
    legend = 0 < len(jobs) <= MAX_LEGEND
    title = f"{len({b['task'] for b in bars})} tasks of {len(jobs)} job(s) on {len(data['rows'])} " \
            f"cores of {len(run.nodes)} node(s)"
    fig, ax = _frame(plt, run, data["rows"], max(per_row.values(), default=1), legend, title)
    cmap = plt.get_cmap("tab20" if len(jobs) > 10 else "tab10")
    colour = {j: cmap(i % cmap.N) for i, j in enumerate(jobs)}
    if bars:
        verts = _verts([(b["start"], b["end"], b["row"], b["rows"]) for b in bars])
        coll = PolyCollection(verts, facecolors=[colour[b["job"]] for b in bars],
                              edgecolors="face" if len(bars) > 500 else "0.2", linewidths=0.3)
        ax.add_collection(coll)
    ax.set_xlim(0, max(data["span_s"], 1e-3) * 1.01)
    if legend:
        ax.legend(handles=[Patch(color=colour[j], label=j) for j in jobs], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="jobs")
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return {"file": out, "bars": len(bars), "rows": len(data["rows"]), "jobs": len(jobs),
            "size_in": list(figure_size(len(data["rows"]), max(per_row.values(), default=1), legend))}


def gantt_gaps(run: RunData, out: str) -> Dict[str, Any]:
    plt = _pyplot()
    from matplotlib.collections import PolyCollection

    data = gaps_data(run)
    gaps = data["gaps"]
    per_row: Dict[int, int] = {}
    for g in gaps:
        per_row[g["row"]] = per_row.get(g["row"], 0) + 1
    title = f"idle cores: {data['idle_core_s']:.2f} core-seconds idle in {len(gaps)} gap(s)"
    fig, ax = _frame(plt, run, data["rows"], max(per_row.values(), default=1), False, title)
    if gaps:
        verts = _verts([(g["start"], g["end"], g["row"], 1) for g in gaps])
        ax.add_collection(PolyCollection(verts, facecolors="tab:red", edgecolors="face", linewidths=0.3))
    ax.set_xlim(0, max(data["span_s"], 1e-3) * 1.01)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return {"file": out, "gaps": len(gaps), "rows": len(data["rows"]),
            "size_in": list(figure_size(len(data["rows"]), max(per_row.values(), default=1), False))}
