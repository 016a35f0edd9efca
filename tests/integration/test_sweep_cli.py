"""A sweep from the command line (issue #15, point 6), through the real ``hpilot`` command:
``hpilot run -- CMD``, ``--array``, ``--each-line``, ``--cores``, and the same on
``hpilot submit`` to a running hpilot, plus ``submit -`` from stdin."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

from tests.conftest import HPILOT, latest_run, wait_for, write_requests

pytestmark = pytest.mark.integration
ENV_KEYS = ("HPILOT_ADDRESS", "QCG_PM_ZMQ_ADDRESS", "HPILOT_SECRET")


def hp(args: List[str], cwd: Path, stdin: Optional[str] = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    proc = subprocess.run(HPILOT + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          input=stdin if stdin is not None else "")
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def test_run_one_command(tmp_path: Path) -> None:
    proc = hp(["run", "--nodes", "2", "--", "bash", "-c", "echo hello > one.txt"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "one.txt").read_text() == "hello\n"
    assert "1 job(s) (1 SUCCEED), 1 task(s): 1 succeeded" in proc.stdout
    assert proc.stderr.startswith("hpilot: run dir ")


def test_run_array_with_placeholders(tmp_path: Path) -> None:
    proc = hp(["run", "--nodes", "4", "--array", "0-9,20", "--", "bash", "-c", "echo {it} {jname} > out-{it}.txt"],
              tmp_path)
    assert proc.returncode == 0, proc.stderr
    outs = sorted(p.name for p in tmp_path.glob("out-*.txt"))
    assert outs == sorted([f"out-{i}.txt" for i in [*range(10), 20]])
    assert (tmp_path / "out-20.txt").read_text() == "20 bash\n"  # {it}: the number; {jname}: the job
    final = json.loads((latest_run(tmp_path) / "final_status").read_text())
    assert final["iterations"]["succeeded"] == 11


def test_run_each_line_with_cores_and_failures(tmp_path: Path) -> None:
    (tmp_path / "params.txt").write_text("alpha 1\nbeta 0\n\ngamma 1\n")
    proc = hp(["run", "--nodes", "4", "--each-line", "params.txt", "--cores", "2", "--name", "lines", "--",
               "bash", "-c", 'set -- {it}; echo "$HPILOT_NPROCS {ncores}" > "$1.txt"; exit $2'],
              tmp_path)
    assert proc.returncode == 1, proc.stderr  # two lines exit 1
    assert "3 task(s): 1 succeeded, 2 failed" in proc.stdout
    assert sorted(p.stem for p in tmp_path.glob("*.txt") if p.stem != "params") == ["alpha", "beta", "gamma"]
    assert (tmp_path / "beta.txt").read_text() == "2 2\n"  # 2 cores per task: in the environment and {ncores}
    # ${...} in a command line is hpilot's (QCG-PilotJob's) variable syntax: a shell's is refused, clearly
    proc = hp(["run", "--", "bash", "-c", "echo ${HOME:-x}"], tmp_path)
    assert proc.returncode == 2 and "unknown variable ${HOME:-x}" in proc.stderr


def test_run_bad_sweeps_are_clear_errors(tmp_path: Path) -> None:
    for args, words in ((["--array", "5-1", "--", "true"], "is empty"),
                        (["--each-line", "nope.txt", "--", "true"], "cannot read"),
                        (["--array", "1", "--each-line", "f", "--", "true"], "give one of them"),
                        (["--array", "0-3"], "after --"),
                        (["jobs.json", "--", "true"], "not both"),
                        ([], "nothing to run"),
                        (["--"], "must be followed by a command")):
        (tmp_path / "jobs.json").write_text("[]")
        proc = hp(["run", *args], tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in proc.stderr, (args, proc.stderr)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Path]:
    wd = tmp_path / "wd"
    wd.mkdir()
    write_requests(wd / "hold.json", [{"request": "submit", "jobs": [
        {"name": "hold", "execution": {"exec": "sleep", "args": ["60"]}}]}])
    proc = subprocess.Popen(HPILOT + ["run", "hold.json", "--nodes", "4"], cwd=wd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: (latest_run(wd) / "local").exists() if (wd / ".hpilot").exists() else False, 30,
                 "the run's local socket")
        yield wd
    finally:
        hp(["finish"], wd)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_submit_sweep_and_stdin(service: Path) -> None:
    elsewhere = service / "sub"
    elsewhere.mkdir()
    out = hp(["submit", "--address", str(service), "--array", "0-3", "--json", "--", "bash", "-c",
              "echo {it} > s-{it}.txt"], elsewhere)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["bash"]
    again = hp(["submit", "--address", str(service), "--json", "--", "bash", "-c", "true"], elsewhere)
    assert json.loads(again.stdout) == ["bash-2"]  # a free name
    jobs = [{"name": "from-stdin", "execution": {"exec": "true"}}]
    piped = hp(["submit", "-", "--json"], service, stdin=json.dumps(jobs))
    assert json.loads(piped.stdout) == ["from-stdin"], piped.stderr
    waited = hp(["wait", "bash", "bash-2", "from-stdin", "--timeout", "30", "--json"], service)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["iterations"]["succeeded"] == 6
    assert sorted(p.name for p in elsewhere.glob("s-*.txt")) == [f"s-{i}.txt" for i in range(4)]  # where typed
    bad = hp(["submit", "-"], service, stdin="{not json")
    assert bad.returncode == 2 and "stdin:1:2: not valid JSON" in bad.stderr
    assert "after --" in hp(["submit", "x.json", "--array", "1-2"], service).stderr
