"""Slurm tests run hpilot inside real allocations of the local cluster (tests/slurm/start.sh).

They skip, with the reason, where no Slurm answers; `.ci/run` starts the cluster first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

NODES = 4


def _slurm_reason() -> Optional[str]:
    if shutil.which("salloc") is None or shutil.which("sinfo") is None:
        return "no Slurm client (salloc/sinfo) here; start the local cluster with tests/slurm/start.sh (as root)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%D %T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return f"sinfo failed: {e}"
    if out.returncode != 0:
        return f"no Slurm controller answers (sinfo: {out.stderr.strip()[:200]}); run tests/slurm/start.sh"
    up = sum(int(line.split()[0]) for line in out.stdout.splitlines()
             if line.split()[1] in ("idle", "mixed", "allocated"))
    if up < NODES:
        return f"the Slurm cluster has {up} usable node(s), these tests need {NODES}"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    why = _slurm_reason()
    if why:
        pytest.skip(why)


HPILOT = [sys.executable, "-m", "hpilot.governor"]


def job_name(cwd: Path) -> str:
    return f"hpilot-test-{os.getpid()}-{abs(hash(str(cwd))) % 10**8}"


def cancel(name: str) -> None:
    """A killed salloc leaves its job behind until its time limit: cancel it by its unique name."""
    subprocess.run(["scancel", "--name", name], capture_output=True, timeout=30)


def salloc(args: List[str], cwd: Path, nodes: int = NODES, per_node: int = 2, timeout: float = 90,
           extra: Optional[List[str]] = None, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """hpilot inside a fresh allocation; salloc's own chatter goes to stderr too."""
    name = job_name(cwd)
    cmd = ["salloc", "-N", str(nodes), f"--ntasks-per-node={per_node}", "--time=5", f"--job-name={name}",
           *(extra or []), *HPILOT, *args]
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    finally:
        cancel(name)
