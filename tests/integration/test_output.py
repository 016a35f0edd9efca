"""Task output kept in a few files, through the real command line: ``hpilot run`` then
``hpilot log``; governor mode (partition managers write into the governor's run dir);
a resume (both attempts of a task that ran twice); the summary line, jobs.report and
``hpilot info`` of a failed task; ``--task-output discard``."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import List

import pytest
from hpilot.governor.service import journal
from hpilot.launcher import output

from tests.conftest import HPILOT, latest_run, report_entries, run_hpilot, submit, wait_for, write_requests

pytestmark = pytest.mark.integration

FAIL = ("echo computing ${it}; echo warming up >&2; "
        "if [ ${it} = 2 ]; then echo 'ValueError: bad input 2' >&2; exit 3; fi")


def _sweep(n: int = 5) -> List[dict]:
    return submit({"name": "sweep", "iteration": {"stop": n}, "execution": {"script": FAIL}},
                  {"name": "named", "execution": {"script": "echo to-file; echo to-stream >&2", "stdout": "named.out"}})


def _log(wd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = run_hpilot(["log", *args], cwd=wd, timeout=30)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def test_run_then_log_reads_each_tasks_output_back(wd: Path) -> None:
    write_requests(wd / "jobs.json", _sweep())
    proc = run_hpilot(["run", "jobs.json", "--nodes", "2", "--report-format", "json"], cwd=wd, timeout=60)
    assert proc.returncode == 1, proc.stderr
    # the summary line names the first failure and what it last wrote on stderr
    assert "first failure: sweep:2 exit code 3: ValueError: bad input 2" in proc.stdout
    outputs = list((latest_run(wd) / "output").iterdir())
    assert len(outputs) == 1 and outputs[0].stat().st_mode & 0o777 == 0o600  # few files: one per launcher
    for it in range(5):
        assert _log(wd, f"sweep:{it}").stdout == f"computing {it}\n"
    err = _log(wd, "sweep:2", "--stderr")
    assert err.returncode == 0 and err.stdout == "warming up\nValueError: bad input 2\n"
    every = _log(wd, "sweep").stdout  # the whole job: each iteration under a header
    assert every.count("==> sweep:") == 5 and every.index("computing 0") < every.index("computing 4")
    # QCG-PilotJob's behaviour for a job that names its file; what it did not name is streamed
    assert (wd / "named.out").read_text() == "to-file\n"
    assert _log(wd, "named", "--stderr").stdout == "to-stream\n"
    said = _log(wd, "named")
    assert said.returncode == 0 and said.stdout == "" and "named.out" in said.stderr
    data = json.loads(_log(wd, "sweep:2", "--json").stdout)
    assert data["tasks"][0]["attempts"][0]["stdout"] == "computing 2\n"
    bad = _log(wd, "nosuchjob")
    assert bad.returncode == 2 and "no job 'nosuchjob'" in bad.stderr
    entry = report_entries(wd)["sweep"]
    assert entry["failures"] == [{"iteration": 2, "exit_code": 3, "stderr": "warming up\nValueError: bad input 2"}]


def test_log_reads_a_given_run_dir_from_anywhere(wd: Path, tmp_path: Path) -> None:
    write_requests(wd / "jobs.json", _sweep(2))
    run_hpilot(["run", "jobs.json", "--nodes", "1"], cwd=wd, timeout=60)
    assert _log(tmp_path, "sweep:1", "--run", str(latest_run(wd))).stdout == "computing 1\n"
    assert _log(tmp_path, "sweep:1", "--run", str(wd)).stdout == "computing 1\n"


def test_discard_keeps_no_output(wd: Path) -> None:
    write_requests(wd / "jobs.json", _sweep(3))
    proc = run_hpilot(["run", "jobs.json", "--nodes", "2", "--task-output", "discard"], cwd=wd, timeout=60)
    assert proc.returncode == 1
    assert not (latest_run(wd) / "output").exists()
    assert "first failure: sweep:2 exit code 3" in proc.stdout and "ValueError" not in proc.stdout
    said = _log(wd, "sweep:1")
    assert said.returncode == 0 and "--task-output discard" in said.stderr


def test_governor_mode_partitions_write_into_the_governors_run_dir(wd: Path) -> None:
    write_requests(wd / "jobs.json", _sweep(8))
    proc = run_hpilot(["run", "jobs.json", "--nodes", "2,2", "--partition-nodes", "1", "--report-format", "json"],
                      cwd=wd, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # output in one file per partition that ran something (p1 holds node n0, p2 n1; the first to
    # register may run all 8 iterations while the other still starts). A partition manager opens
    # its file when it starts: one that started but got no work has a file with no task in it
    files = sorted(p.name for p in (latest_run(wd) / "output").iterdir() if output.scan(str(p), lambda _: True)[0])
    nodes = {r[6].split("[")[0] for r in journal.finished(journal.read(str(latest_run(wd) / "journal")).records)}
    assert {f.split("-")[0] for f in files} == {{"n0": "p1", "n1": "p2"}[n] for n in nodes}, (files, nodes)
    for it in range(8):
        assert _log(wd, f"sweep:{it}").stdout == f"computing {it}\n"
    assert "first failure: sweep:2 exit code 3: ValueError: bad input 2" in proc.stdout
    assert report_entries(wd)["sweep"]["failures"][0]["stderr"].endswith("ValueError: bad input 2")


def test_a_resume_adds_its_output_and_a_rerun_task_shows_both_attempts(wd: Path) -> None:
    script = ("if [ -e second ]; then echo second attempt; exit 0; fi; touch second; echo first attempt; "
              "echo first stderr >&2; exec sleep 60")
    write_requests(wd / "jobs.json", submit({"name": "once", "execution": {"script": "echo quick"}},
                                            {"name": "slow", "execution": {"script": script}}))
    proc = subprocess.Popen(HPILOT + ["run", "jobs.json", "--nodes", "2"], cwd=wd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # what the task wrote is in the file before hpilot is killed: nothing kept in memory is lost
        wait_for(lambda: _log(wd, "slow").stdout == "first attempt\n" and _log(wd, "once").stdout == "quick\n",
                 30, "the first attempt's output")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    resumed = run_hpilot(["resume", "."], cwd=wd, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(list((latest_run(wd) / "output").iterdir())) == 2  # one file per launcher: before, after
    both = _log(wd, "slow").stdout
    assert "attempt 1 of 2" in both and "attempt 2 of 2" in both
    assert both.index("first attempt") < both.index("second attempt")
    assert _log(wd, "slow", "--stderr").stdout == "first stderr\n"
    assert _log(wd, "once").stdout == "quick\n"  # finished before the kill: ran once


def test_info_of_a_running_service_shows_the_failures(wd: Path) -> None:
    proc = subprocess.Popen(HPILOT + ["service", "--net", "--nodes", "2", "--wd", str(wd)], cwd=wd,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and "listening on" in proc.stdout.readline()
        write_requests(wd / "more.json", [{"name": "sweep", "iteration": {"stop": 4},
                                           "execution": {"script": FAIL}}])
        assert run_hpilot(["submit", "more.json"], cwd=wd).returncode == 0
        wait_for(lambda: run_hpilot(["wait", "sweep"], cwd=wd, timeout=30).returncode != 2, 30, "sweep to end")
        info = run_hpilot(["info", "sweep"], cwd=wd)
        assert "failed:     sweep:2 exit code 3" in info.stdout
        assert "            | ValueError: bad input 2" in info.stdout
        data = json.loads(run_hpilot(["info", "sweep", "--json"], cwd=wd).stdout)
        assert data["failures"] == [{"iteration": 2, "exit_code": 3,
                                     "stderr": "warming up\nValueError: bad input 2"}]
        assert data["messages"] == "sweep:2: exit code 3"  # QCG-PilotJob's key, as it was
    finally:
        run_hpilot(["finish"], cwd=wd)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
