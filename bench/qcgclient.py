"""QCG-PilotJob's own client against hpilot: how soon its wait4 / wait4all return after a job ends.

QCG-PilotJob 0.14.2's ``Manager`` waits on its service's published events (``JFI``,
``IFI``, ``NOJ``); without them it would poll every 5 s.  Each sample submits one
``/bin/true``, waits for it with QCG-PilotJob's client, and measures from the job's end
(its SUCCEED time in the service's history, which is when the launcher saw the process
exit) to the moment the client's call returned.  Needs ``qcg-pilotjob`` (the test extra).
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime
from typing import Any, Callable, Dict, List

SAMPLES = 30
TARGET_S = 0.050


def _ended(m: Any, name: str) -> float:
    """The job's SUCCEED moment, from its history (``\\nYYYY-MM-DD HH:MM:SS.ffffff: STATE`` lines)."""
    history = m.info(name)["jobs"][name]["data"]["history"]
    for line in history.splitlines():
        if line.endswith(": SUCCEED"):
            return datetime.strptime(line.rsplit(": ", 1)[0], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    raise RuntimeError(f"{name} did not succeed: {history}")


def _sample(m: Any, name: str, wait: Callable[[], Any]) -> Dict[str, float]:
    from qcg.pilotjob.api.job import Jobs

    t0 = time.time()
    m.submit(Jobs().add(name=name, exec="/bin/true"))
    wait()
    back = time.time()
    return {"after_end": back - _ended(m, name), "total": back - t0}


def run(workdir: str) -> List[Dict[str, Any]]:
    """The two rows (empty when QCG-PilotJob's client is not installed)."""
    try:
        from qcg.pilotjob.api.manager import Manager
    except ImportError:
        return []
    from hpilot.governor import LocalManager

    wd = os.path.join(workdir, "API-QCG")
    os.makedirs(wd, exist_ok=True)
    service = LocalManager(["--nodes", "2", "--wd", wd, "--log", "warning"])  # hpilot's service
    try:
        m = Manager(address=service.address, cfg={"log_file": os.path.join(wd, "qcg-api.log")})
        try:
            w4 = [_sample(m, f"q{i}", lambda i=i: m.wait4(f"q{i}")) for i in range(SAMPLES)]
            # wait4all reads the events queued since connecting, so each sample uses a fresh client
            w4all = []
            for i in range(SAMPLES // 3):
                fresh = Manager(address=service.address, cfg={"log_file": os.path.join(wd, "qcg-api-all.log")})
                try:
                    w4all.append(_sample(fresh, f"qa{i}", fresh.wait4all))
                finally:
                    fresh._disconnect()
                    fresh._zmq_status_socket.close(0)
                    fresh.cleanup()
        finally:
            m._disconnect()
            m.cleanup()
    finally:
        service.finish()
    return [_row("API-QCG-wait4", "QCG-PilotJob 0.14.2's Manager.wait4 of /bin/true: end of job to return, "
                 f"median of {len(w4)}", w4),
            _row("API-QCG-wait4all", "QCG-PilotJob 0.14.2's Manager.wait4all (fresh client): end of job to return, "
                 f"median of {len(w4all)}", w4all)]


def _row(name: str, desc: str, samples: List[Dict[str, float]]) -> Dict[str, Any]:
    after = statistics.median(s["after_end"] for s in samples)
    total = statistics.median(s["total"] for s in samples)
    return {"workload": name, "description": desc, "tasks": 0, "wall_s": round(after, 4), "tasks_per_s": None,
            "peak_mb": 0.0, "makespan_s": None, "exit_codes": [0], "runs": [],
            "max_after_end_s": round(max(s["after_end"] for s in samples), 4),
            "submit_to_return_s": round(total, 4),
            "target": "< 50 ms after the job ends (events, not 5 s polls)", "met": after < TARGET_S}
