"""The benchmark workloads, as QCG-PilotJob request files (they run under it too).

W0 empty file; W1 one job of 2000 iterations of /bin/true; W2 2000 separate
/bin/true jobs; W3 a DAG of 200 `sleep 0.01` jobs in chains and diamonds; W4 64
iterations of `sleep 1` on 16 virtual cores; M1 a 1,000,000-iteration job,
submitted then canceled (memory).
"""

from __future__ import annotations

from typing import Any, Dict, List

FINISH = {"request": "control", "command": "finishAfterAllTasksDone"}


def _submit(jobs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{"request": "submit", "jobs": jobs}, FINISH]


def w0() -> List[Dict[str, Any]]:
    return []


def w1(n: int = 2000) -> List[Dict[str, Any]]:
    return _submit([{
        "name": "w1", "iteration": {"stop": n},
        "execution": {"exec": "/bin/true"}, "resources": {"numCores": {"exact": 1}},
    }])


def w2(n: int = 2000) -> List[Dict[str, Any]]:
    return _submit([{"name": f"j{i}", "execution": {"exec": "/bin/true"}} for i in range(n)])


def w3(n: int = 200) -> List[Dict[str, Any]]:
    """Blocks of 10 jobs: a chain of 4, then a diamond (1 -> 4 -> 1); blocks chain too."""
    jobs: List[Dict[str, Any]] = []
    prev = None
    for b in range(n // 10):
        names = [f"b{b}_{k}" for k in range(10)]
        deps: List[List[str]] = [[prev] if prev else [], [names[0]], [names[1]], [names[2]],
                                 [names[3]], [names[4]], [names[4]], [names[4]], [names[4]],
                                 names[5:9]]
        for name, after in zip(names, deps):
            job: Dict[str, Any] = {"name": name, "execution": {"exec": "/bin/sleep", "args": ["0.01"]}}
            if after:
                job["dependencies"] = {"after": after}
            jobs.append(job)
        prev = names[-1]
    return _submit(jobs)


def w4() -> List[Dict[str, Any]]:
    return _submit([{
        "name": "w4", "iteration": {"stop": 64},
        "execution": {"exec": "/bin/sleep", "args": ["1"]},
    }])


def m1(n: int = 1_000_000) -> List[Dict[str, Any]]:
    return [
        {"request": "submit", "jobs": [{"name": "m1", "iteration": {"stop": n},
                                        "execution": {"exec": "/bin/true"}}]},
        {"request": "cancelJob", "jobNames": ["m1"]},
        FINISH,
    ]


# name -> (builder, extra hpilot args, tasks, description)
# M1's job is canceled on purpose, so hpilot exits 1 there ("some job did not succeed").
EXPECTED_EXIT = {"M1": 1}
WORKLOADS = {
    "W0": (w0, ["--nodes", "2"], 0, "empty request file"),
    "W1": (w1, ["--nodes", "2"], 2000, "1 job x 2000 iterations of /bin/true"),
    "W2": (w2, ["--nodes", "2"], 2000, "2000 jobs of /bin/true"),
    "W3": (w3, ["--nodes", "2"], 200, "DAG of 200 sleep 0.01 (chains, diamonds)"),
    "W4": (w4, ["--nodes", "16"], 64, "64 x sleep 1 on 16 virtual cores"),
    "M1": (m1, ["--nodes", "2"], 0, "1,000,000 iterations submitted, canceled"),
}
