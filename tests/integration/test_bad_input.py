"""Bad input to the real ``hpilot`` command: clear messages, no tracebacks, nothing valid lost.

Every bad input must give either one ``hpilot: error: ...`` line (options, config,
request file) or a refused-request message that names the job and the field, and
a non-zero exit status.  A refused request never stops the valid requests after
it: their jobs run, and the exit status is 2.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from tests.conftest import latest_run, run_hpilot, write_requests

pytestmark = pytest.mark.integration

TIMEOUT = 25.0


# ---- helpers ----


def hp(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = run_hpilot(args, cwd, timeout=TIMEOUT)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert "internal error" not in out, out
    return proc


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run stopped before starting: exit 2 and exactly one 'hpilot: error:' line."""
    assert proc.returncode == 2, describe(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith("hpilot: error: "), describe(proc)
    return lines[0]


def good_job(marker: str = "ok.txt") -> Dict[str, Any]:
    return {"name": "good", "execution": {"script": f"touch {marker}"}}


def good_request() -> Dict[str, Any]:
    return {"request": "submit", "jobs": [good_job()]}


FINISH: Dict[str, Any] = {"request": "control", "command": "finishAfterAllTasksDone"}

EMPTY_OK: List[Dict[str, Any]] = [good_request(), FINISH]


# ---- the request file itself ----


def test_missing_request_file(wd: Path) -> None:
    line = one_error_line(hp(["run", "no-such-file.json"], wd))
    assert "no-such-file.json" in line
    assert not (wd / ".hpilot").exists(), "nothing should run"


def test_malformed_json_gives_line_and_column(wd: Path) -> None:
    (wd / "bad.json").write_text('[\n  {"request": "submit",\n   "jobs": [}\n]\n')
    line = one_error_line(hp(["run", "bad.json"], wd))
    assert re.search(r"bad\.json:3:\d+: ", line), line
    assert "JSON" in line


def test_file_that_is_not_a_list_of_requests(wd: Path) -> None:
    (wd / "num.json").write_text("42\n")
    line = one_error_line(hp(["run", "num.json"], wd))
    assert "num.json" in line and "list of requests" in line


def test_single_request_object_is_accepted(wd: Path) -> None:
    (wd / "one.json").write_text(json.dumps(good_request()))
    proc = hp(["run", "one.json", "--nodes", "2"], wd)
    assert proc.returncode == 0, describe(proc)
    assert (wd / "ok.txt").exists()


def _run_with_later_valid(wd: Path, bad: List[Any], extra: Optional[List[str]] = None
                          ) -> subprocess.CompletedProcess:
    """Bad requests first, then a valid submit: the valid job must still run (exit 2)."""
    write_requests(wd / "jobs.json", [*bad, good_request(), FINISH])
    proc = hp(["run", "jobs.json", "--nodes", "2", *(extra or [])], wd)
    assert proc.returncode == 2, describe(proc)
    assert (wd / "ok.txt").exists(), "the valid job after the bad request did not run"
    fs = json.loads((latest_run(wd) / "final_status").read_text())
    assert fs["exit_status"] == 2 and fs["jobs"] == {"SUCCEED": 1}
    return proc


def test_request_that_is_not_an_object(wd: Path) -> None:
    proc = _run_with_later_valid(wd, [42])
    assert re.search(r"request #1 .*must be a JSON object", proc.stderr), describe(proc)


def test_unknown_request_name(wd: Path) -> None:
    proc = _run_with_later_valid(wd, [{"request": "frobnicate"}])
    assert "request #1" in proc.stderr and "'frobnicate'" in proc.stderr, describe(proc)
    assert "submit" in proc.stderr  # the known requests are listed


def test_unknown_control_command(wd: Path) -> None:
    proc = _run_with_later_valid(wd, [{"request": "control", "command": "finishSoon"}])
    assert '"finishSoon"' in proc.stderr and "finishAfterAllTasksDone" in proc.stderr, describe(proc)


# ---- bad job descriptions: refused with the job and the field named ----


def _exec(**more: Any) -> Dict[str, Any]:
    return {"exec": "/bin/true", **more}


BAD_JOBS: Dict[str, Dict[str, Any]] = {
    "unknown-field": {
        "jobs": [{"name": "a", "exectuion": _exec(), "execution": _exec()}],
        "expect": ["job 'a'", "exectuion", "did you mean 'execution'"],
    },
    "unknown-execution-field": {
        "jobs": [{"name": "a", "execution": _exec(stdot="x.txt")}],
        "expect": ["job 'a'", "execution.stdot", "did you mean 'stdout'"],
    },
    "missing-name": {
        "jobs": [{"execution": _exec()}],
        "expect": ["job '#1'", "name", "missing"],
    },
    "missing-execution": {
        "jobs": [{"name": "b"}],
        "expect": ["job 'b'", "execution", "missing"],
    },
    "duplicate-names": {
        "jobs": [{"name": "c", "execution": _exec()}, {"name": "c", "execution": _exec()}],
        "expect": ["job 'c'", "name", "twice"],
    },
    "name-of-an-accepted-job": {
        "before": [{"name": "good", "execution": _exec()}],
        "jobs": [{"name": "good", "execution": _exec()}],
        "expect": ["job 'good'", "name", "exists already"],
    },
    "iteration-stop-before-start": {
        "jobs": [{"name": "d", "iteration": {"start": 5, "stop": 2}, "execution": _exec()}],
        "expect": ["job 'd'", "iteration", "stop (2)", "start (5)"],
    },
    "iteration-negative-start": {
        "jobs": [{"name": "d", "iteration": {"start": -1, "stop": 2}, "execution": _exec()}],
        "expect": ["job 'd'", "iteration.start"],
    },
    "iteration-missing-stop": {
        "jobs": [{"name": "d", "iteration": {"start": 1}, "execution": _exec()}],
        "expect": ["job 'd'", "iteration.stop", "missing"],
    },
    "unknown-variable": {
        "jobs": [{"name": "e", "execution": _exec(args=["${nosuchvar}"])}],
        "expect": ["job 'e'", "execution.args[0]", "${nosuchvar}"],
    },
    "misspelt-variable": {
        "jobs": [{"name": "e", "execution": _exec(stdout="out-${jnam}.txt")}],
        "expect": ["job 'e'", "execution.stdout", "did you mean ${jname}"],
    },
    "it-in-plain-job": {
        "jobs": [{"name": "e", "execution": _exec(args=["${it}"])}],
        "expect": ["job 'e'", "execution.args[0]", "iteration"],
    },
    "dependency-cycle": {
        "jobs": [{"name": "f1", "execution": _exec(), "dependencies": {"after": ["f2"]}},
                 {"name": "f2", "execution": _exec(), "dependencies": {"after": ["f1"]}}],
        "expect": ["dependencies.after", "cycle", "f1", "f2"],
    },
    "self-dependency": {
        "jobs": [{"name": "f", "execution": _exec(), "dependencies": {"after": ["f"]}}],
        "expect": ["job 'f'", "dependencies.after[0]", "itself"],
    },
    "unknown-dependency": {
        "jobs": [{"name": "g", "execution": _exec(), "dependencies": {"after": ["ghost"]}}],
        "expect": ["job 'g'", "dependencies.after[0]", "'ghost'"],
    },
    "impossible-cores": {
        "jobs": [{"name": "h", "execution": _exec(), "resources": {"numCores": {"exact": 1000}}}],
        "expect": ["job 'h'", "resources.numCores", "1000"],
    },
    "bad-wall-time": {
        "jobs": [{"name": "h", "execution": _exec(), "resources": {"wt": "soon"}}],
        "expect": ["job 'h'", "resources.wt", "'soon'"],
    },
    "missing-absolute-executable": {
        "jobs": [{"name": "i", "execution": {"exec": "/no/such/prog"}}],
        "expect": ["job 'i'", "execution.exec", "/no/such/prog"],
    },
    "missing-program-in-path": {
        "jobs": [{"name": "j", "execution": {"exec": "no-such-program-xyz"}}],
        "expect": ["job 'j'", "execution.exec", "no-such-program-xyz"],
    },
    "wd-in-proc": {
        "jobs": [{"name": "k", "execution": _exec(wd="/proc/x/y")}],
        "expect": ["job 'k'", "execution.wd", "/proc/x/y"],
    },
    "wd-under-a-regular-file": {
        "jobs": [{"name": "l", "execution": _exec(wd="afile/sub")}],
        "expect": ["job 'l'", "execution.wd", "Not a directory"],
    },
    # types as the manual says (a number once became a file named 5, or a script that ran)
    "stdout-a-number": {
        "jobs": [{"name": "m", "execution": _exec(stdout=5)}],
        "expect": ["job 'm'", "execution.stdout", "must be a string, not a number"],
    },
    "script-a-number": {
        "jobs": [{"name": "m", "execution": {"script": 5}}],
        "expect": ["job 'm'", "execution.script", "must be a string, not a number"],
    },
    "iteration-a-list": {
        "jobs": [{"name": "m", "iteration": [1, 2], "execution": _exec()}],
        "expect": ["job 'm'", "iteration", "must be an object", "not a list"],
    },
    # output paths no task could open: refused at submit, naming the path
    "stdout-a-directory": {
        "jobs": [{"name": "n", "execution": _exec(stdout="adir")}],
        "expect": ["job 'n'", "execution.stdout", "adir is a directory"],
    },
    "stderr-in-a-missing-directory": {
        "jobs": [{"name": "n", "iteration": {"stop": 2}, "execution": _exec(stderr="nodir/err.${it}")}],
        "expect": ["job 'n'", "execution.stderr", "no such directory", "nodir"],
    },
    "stdout-under-a-regular-file": {
        "jobs": [{"name": "n", "execution": _exec(stdout="afile/out")}],
        "expect": ["job 'n'", "execution.stdout", "afile is not a directory"],
    },
    "stdout-in-an-unwritable-place": {
        "jobs": [{"name": "n", "execution": _exec(stdout="/proc/self/hpilot.out")}],
        "expect": ["job 'n'", "execution.stdout", "cannot write in /proc/self"],
    },
}


@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_bad_job_is_refused_and_later_valid_job_runs(wd: Path, case: str) -> None:
    spec = BAD_JOBS[case]
    (wd / "afile").write_text("a regular file\n")
    (wd / "adir").mkdir()
    bad: List[Any] = []
    if "before" in spec:
        bad.append({"request": "submit", "jobs": spec["before"]})
    bad.append({"request": "submit", "jobs": spec["jobs"]})
    proc = _run_with_later_valid(wd, bad) if "before" not in spec else _run_after_accepted(wd, bad)
    refusal = proc.stderr
    assert "refused" in refusal, describe(proc)
    for piece in spec["expect"]:
        assert piece in refusal, f"{piece!r} missing from the refusal:\n{describe(proc)}"
    # the refusal is in service.log too
    log = (latest_run(wd) / "service.log").read_text()
    assert "refused" in log and spec["expect"][0] in log


def _run_after_accepted(wd: Path, bad: List[Any]) -> subprocess.CompletedProcess:
    """Like _run_with_later_valid, with one accepted job before the bad request."""
    write_requests(wd / "jobs.json", [*bad, {"request": "submit", "jobs": [
        {"name": "later", "execution": {"script": "touch ok.txt"}}]}, FINISH])
    proc = hp(["run", "jobs.json", "--nodes", "2"], wd)
    assert proc.returncode == 2, describe(proc)
    assert (wd / "ok.txt").exists(), "the valid job after the bad request did not run"
    return proc


def test_all_problems_of_a_job_are_listed_at_once(wd: Path) -> None:
    bad = [{"request": "submit", "jobs": [{
        "name": "many", "execution": {"exec": "/bin/true", "stdot": "x"},
        "iteration": {"start": 3, "stop": 1}, "resources": {"numCores": {"exact": 0}},
    }]}]
    proc = _run_with_later_valid(wd, bad)
    for piece in ("execution.stdot", "iteration", "resources.numCores.exact"):
        assert piece in proc.stderr, describe(proc)


def test_refused_submit_accepts_no_job_of_it(wd: Path) -> None:
    bad = [{"request": "submit", "jobs": [
        {"name": "fine", "execution": {"script": "touch fine-ran"}},
        {"name": "broken", "execution": {"exec": "/no/such/prog"}},
    ]}]
    proc = _run_with_later_valid(wd, bad)
    assert "job 'broken'" in proc.stderr
    assert not (wd / "fine-ran").exists(), "a refused submit is refused as a whole"


# ---- configuration and options ----


def test_malformed_toml_gives_line_and_column(wd: Path) -> None:
    (wd / "bad.toml").write_text('report_format = "json"\nlog = = "info"\nwd = "."\n')
    write_requests(wd / "jobs.json", EMPTY_OK)
    line = one_error_line(hp(["run", "jobs.json", "--config", "bad.toml"], wd))
    assert "bad.toml" in line
    assert re.search(r"line 2\b.*column \d+", line), line
    assert not (wd / "ok.txt").exists()


def test_unknown_toml_key_with_suggestion(wd: Path) -> None:
    (wd / "typo.toml").write_text('report_fromat = "json"\n')
    write_requests(wd / "jobs.json", EMPTY_OK)
    line = one_error_line(hp(["run", "jobs.json", "--config", "typo.toml"], wd))
    assert "typo.toml" in line and "'report_fromat'" in line and "did you mean 'report_format'" in line


def test_bad_toml_value(wd: Path) -> None:
    (wd / "val.toml").write_text('report_format = "xml"\n')
    write_requests(wd / "jobs.json", EMPTY_OK)
    line = one_error_line(hp(["run", "jobs.json", "--config", "val.toml"], wd))
    assert "report_format" in line and "'xml'" in line


def test_missing_toml_file(wd: Path) -> None:
    write_requests(wd / "jobs.json", EMPTY_OK)
    line = one_error_line(hp(["run", "jobs.json", "--config", "nope.toml"], wd))
    assert "nope.toml" in line


@pytest.mark.parametrize("nodes", ["0", "a:b", "2,,2", "n1:2,n1:2"])
def test_bad_nodes(wd: Path, nodes: str) -> None:
    write_requests(wd / "jobs.json", EMPTY_OK)
    line = one_error_line(hp(["run", "jobs.json", "--nodes", nodes], wd))
    assert "--nodes" in line and repr(nodes) in line, line
    assert not (wd / "ok.txt").exists()


def test_service_file_flag_without_path(wd: Path) -> None:
    line = one_error_line(hp(["service", "--file"], wd))
    assert "--file-path" in line


def test_service_with_nothing_to_run(wd: Path) -> None:
    line = one_error_line(hp(["service"], wd))
    assert "request file" in line


def test_wd_that_cannot_be_created(wd: Path) -> None:
    (wd / "afile").write_text("x\n")
    write_requests(wd / "jobs.json", EMPTY_OK)
    line = one_error_line(hp(["run", "jobs.json", "--wd", "afile/sub"], wd))
    assert "--wd" in line and "afile/sub" in line


# ---- precedence: command line > TOML > defaults ----


def _first_report_line(wd: Path) -> str:
    return (latest_run(wd) / "jobs.report").read_text().splitlines()[0]


def test_command_line_wins_over_toml(wd: Path) -> None:
    (wd / "c.toml").write_text('report_format = "json"\n')
    write_requests(wd / "jobs.json", EMPTY_OK)
    proc = hp(["run", "jobs.json", "--nodes", "2", "--config", "c.toml", "--report-format", "text"], wd)
    assert proc.returncode == 0, describe(proc)
    first = _first_report_line(wd)
    assert first == "good (SUCCEED)", first


def test_toml_alone_applies(wd: Path) -> None:
    (wd / "c.toml").write_text('report_format = "json"\nreport_file = "from-toml.report"\nnodes = "3"\n')
    write_requests(wd / "jobs.json", EMPTY_OK)
    proc = hp(["run", "jobs.json", "--config", "c.toml"], wd)
    assert proc.returncode == 0, describe(proc)
    entry = json.loads((latest_run(wd) / "from-toml.report").read_text().splitlines()[0])
    assert entry["name"] == "good" and entry["state"] == "SUCCEED"
    fs = json.loads((latest_run(wd) / "final_status").read_text())
    assert fs["resources"]["total_cores"] == 3
