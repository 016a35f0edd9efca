"""Plots that scale to 100,000 tasks on 1,000 nodes: ``cores``, ``throughput`` and the
Gantt chart's density view.

They draw the binned series of :mod:`timeline` (a few thousand points, whatever the
number of tasks), so they render in a second or two; the figure has a fixed, readable
size.  The Gantt chart switches to its density view past :data:`DENSITY_FROM_ROWS` rows
(one row per core): a bar per task is a barcode there, while a row per node coloured
by how many of its cores were busy shows the allocation's use and its holes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from hpilot.governor.reports import timeline
from hpilot.governor.reports.plots import DPI, _pyplot
from hpilot.governor.reports.rundata import RunData

DENSITY_FROM_ROWS = 300  # `gantt` draws bars up to this many cores, the density view past it
MAX_LABELS = 40


def time_unit(span: float) -> Tuple[float, str]:
    """Seconds, minutes or hours for an axis of ``span`` seconds."""
    if span >= 3 * 3600:
        return 3600.0, "hours"
    if span >= 3 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _edges(times: Sequence[float], width: float, unit: float) -> List[float]:
    """Bin edges in ``unit``s: each bin's start, and the end of the last."""
    return [t / unit for t in times] + [((times[-1] if times else 0.0) + width) / unit]


def _ext(values: Sequence[float]) -> List[float]:
    return list(values) + [values[-1] if values else 0.0]


def _n(x: int) -> str:
    return f"{x:,}"


def _secs(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:g} h"
    if s >= 60:
        return f"{s / 60:g} min"
    return f"{s:g} s"


def _rate(per_s: float) -> str:
    return f"{per_s:,.0f}/s" if per_s >= 10 else f"{per_s:.3g}/s" if per_s >= 0.1 else f"{per_s * 60:.3g}/min"


def cores_plot(run: RunData, out: str) -> Dict[str, Any]:
    """Busy cores over time: a stacked area per node group, the total, the allocation's cores."""
    plt = _pyplot()
    d = timeline.busy_cores(run)
    unit, label = time_unit(d["span_s"])
    x = _edges(d["times"], d["bin_s"], unit)
    fig, ax = plt.subplots(figsize=(13, 5.5), dpi=DPI)
    fig.subplots_adjust(left=0.07, right=0.74, top=0.88, bottom=0.12)
    cmap = plt.get_cmap("tab10" if len(d["groups"]) <= 10 else "tab20")
    base = [0.0] * len(x)
    for i, g in enumerate(d["groups"]):
        top = [b + v for b, v in zip(base, _ext(g["busy"]))]
        what = f"{_n(g['cores'])} cores" if g["cores"] else "unlisted"
        ax.fill_between(x, base, top, step="post", color=cmap(i % cmap.N), alpha=0.85, linewidth=0,
                        label=f"{g['name']} ({what})")
        base = top
    ax.step(x, _ext(d["total_busy"]), where="post", color="black", linewidth=0.8, label="all nodes")
    cores = d["total_cores"] or max(d["total_busy"], default=1.0)
    ax.axhline(cores, linestyle="--", color="0.35", linewidth=1.0, label=f"allocation: {_n(int(cores))} cores")
    ax.set_xlim(0, x[-1])
    ax.set_ylim(0, cores * 1.08)
    ax.set_xlabel(f"{label} since the service started")
    ax.set_ylabel(f"busy cores (mean of each {_secs(d['bin_s'])})")
    util = f", {d['utilization_pct']:.0f}% of the allocation's core-time used" if d["utilization_pct"] else ""
    ax.set_title(f"Busy cores over time: {_n(d['tasks'])} tasks on {_n(d['nodes'])} node(s){util}", fontsize=11)
    ax.grid(color="0.9", linewidth=0.5)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title="node groups" if len(d["groups"]) > 1 else None)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return {"file": out, "groups": len(d["groups"]), "tasks": d["tasks"], "utilization_pct": d["utilization_pct"]}


def throughput_plot(run: RunData, out: str) -> Dict[str, Any]:
    """Per job: tasks finished per second (top), and how many have finished (bottom)."""
    plt = _pyplot()
    d = timeline.throughput(run)
    unit, label = time_unit(d["span_s"])
    x = _edges(d["times"], d["bin_s"], unit)
    fig, (rate, done) = plt.subplots(2, 1, sharex=True, figsize=(13, 7), dpi=DPI,
                                     gridspec_kw={"height_ratios": [3, 2]})
    fig.subplots_adjust(left=0.085, right=0.74, top=0.91, bottom=0.09, hspace=0.08)
    cmap = plt.get_cmap("tab10")
    for i, j in enumerate(d["jobs"]):
        colour = cmap(i % cmap.N)
        rate.step(x, _ext(j["per_s"]), where="post", color=colour, linewidth=1.0,
                  label=f"{j['name']}: {_n(j['tasks'])} tasks, {_rate(j['mean_per_s'])} on average")
        done.step(x, [0] + j["done"], where="post", color=colour, linewidth=1.2)
    rate.set_ylabel(f"tasks finished per second\n(each {_secs(d['bin_s'])})")
    done.set_ylabel("tasks finished")
    done.set_xlabel(f"{label} since the service started")
    done.set_xlim(0, x[-1])
    rate.set_ylim(bottom=0)
    done.set_ylim(bottom=0)
    total = sum(j["tasks"] for j in d["jobs"])
    rate.set_title(f"Throughput per job: {_n(total)} tasks of {len(d['jobs'])} job(s) finished in "
                   f"{d['span_s'] / unit:.3g} {label}", fontsize=11)
    for ax in (rate, done):
        ax.grid(color="0.9", linewidth=0.5)
        ax.set_axisbelow(True)
    rate.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="jobs")
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return {"file": out, "jobs": len(d["jobs"]), "tasks": total}


def density_plot(run: RunData, out: str) -> Dict[str, Any]:
    """The Gantt chart past a few hundred cores: a row per node (or run of cores), the colour
    the fraction of its cores busy in each time bin; above it, busy cores in total."""
    plt = _pyplot()
    d = timeline.density(run, array=True)
    columns = len(d["grid"][0]) if len(d["grid"]) else 0
    busy = timeline.busy_cores(run, max_groups=1)
    unit, label = time_unit(d["span_s"])
    rows = len(d["rows"])
    height = min(13.0, max(6.0, 2.5 + rows * 0.009))
    fig, (top, ax) = plt.subplots(2, 1, sharex=True, figsize=(14, height), dpi=DPI,
                                  gridspec_kw={"height_ratios": [1, 5]})
    fig.subplots_adjust(left=0.09, right=0.9, top=1 - 0.75 / height, bottom=0.7 / height, hspace=0.05)
    span = d["span_s"] / unit
    x = _edges(busy["times"], busy["bin_s"], unit)
    top.fill_between(x, 0, _ext(busy["total_busy"]), step="post", color="tab:blue", linewidth=0)
    cores = d["cores"] or 1
    top.axhline(cores, linestyle="--", color="0.35", linewidth=0.8)
    top.set_ylim(0, cores * 1.1)
    top.set_ylabel("busy\ncores", fontsize=8)
    top.tick_params(labelsize=7)
    image = ax.imshow(d["grid"] if len(d["grid"]) else [[0.0]], aspect="auto", interpolation="nearest",
                      cmap="Blues", vmin=0.0, vmax=1.0, extent=(0.0, columns * d["bin_s"] / unit, rows, 0.0))
    step = max(1, rows // MAX_LABELS)
    ax.set_yticks([i + 0.5 for i in range(0, rows, step)])
    ax.set_yticklabels(d["rows"][::step], fontsize=6 if rows > 20 else 8)
    ax.set_ylabel("nodes" if d["by"] == "node" else "cores (node:first-last)")
    ax.set_xlabel(f"{label} since the service started")
    ax.set_xlim(0, max(span, columns * d["bin_s"] / unit))
    for band in d["partitions"]:  # governor mode: where each partition's nodes are
        ax.axhline(band["first"], color="tab:red", linewidth=0.6, alpha=0.7)
        ax.text(0.002, (band["first"] + band["last"] + 1) / 2, f" {band['name']} ", transform=ax.get_yaxis_transform(),
                va="center", ha="left", fontsize=8, color="tab:red",
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    bar = fig.colorbar(image, ax=[top, ax], fraction=0.025, pad=0.01)
    bar.set_label("fraction of the row's cores busy")
    codes = run.spans.exit_code if run.spans is not None else [t.exit_code for t in run.tasks]
    failed = sum(1 for c in codes if c not in (0, None))
    parts = f", {len(d['partitions'])} partitions" if d["partitions"] else ""
    per_row = "one row per node" if d["by"] == "node" and rows == d["nodes"] else (
        f"{d['nodes'] // rows}+ nodes per row" if d["by"] == "node" else f"up to {max(d['row_cores'])} cores per row")
    top.set_title(f"{_n(d['tasks'])} tasks of {len(d['jobs'])} job(s) on {_n(d['cores'])} cores of "
                  f"{_n(d['nodes'])} node(s){parts}{f', {_n(failed)} failed' if failed else ''} - density view "
                  f"({per_row}, {_secs(d['bin_s'])} per column)", fontsize=10)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return {"file": out, "rows": rows, "columns": columns, "tasks": d["tasks"],
            "view": "density", "size_in": [14, round(height, 2)]}
