"""Governor mode on the local Slurm cluster (issue #5): W1 by one manager vs two partition managers.

The same 2000 ``/bin/true`` run inside ``salloc -N 4 --ntasks-per-node=2``, alternately by
one manager (one agent per node) and with ``--slurm-partition-nodes 2`` (a governor that
starts two partition managers with srun, each with the agents of its 2 nodes).  Time is the
governor's or the manager's own elapsed time from ``final_status``, so start-up of agents
and partition managers counts, salloc's own queueing does not.  Target: every iteration
SUCCEED, and governor-mode throughput no lower than one manager's.
Needs the cluster of ``tests/slurm/start.sh``; ``bench.agents.slurm_reason`` says why not.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from typing import Any, Dict, List

from bench.agents import SALLOC, TASKS, requests_file, run_once

PARTITION_NODES = 2


def measure(repeat: int) -> Dict[str, Any]:
    """Medians of ``repeat`` runs each way (alternating, so load falls on both alike)."""
    one: List[Dict[str, Any]] = []
    gov: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hpilot-bench-slurm-gov-") as tmp:
        req = requests_file(tmp)
        for i in range(repeat):
            one.append(run_once(SALLOC, os.path.join(tmp, f"one{i}"), req, []))
            gov.append(run_once(SALLOC, os.path.join(tmp, f"gov{i}"), req,
                                ["--slurm-partition-nodes", str(PARTITION_NODES)]))
    t_one = statistics.median(r["elapsed"] for r in one)
    t_gov = statistics.median(r["elapsed"] for r in gov)
    return {
        "tasks": TASKS, "partition_nodes": PARTITION_NODES, "one_s": round(t_one, 3),
        "one_tasks_per_s": round(TASKS / t_one), "governor_s": round(t_gov, 3),
        "governor_tasks_per_s": round(TASKS / t_gov), "ratio": round(t_one / t_gov, 3),
        "all_succeeded": all(int(r["succeeded"]) == TASKS for r in one + gov),
        "runs_one": [r["elapsed"] for r in one], "runs_governor": [r["elapsed"] for r in gov],
    }
