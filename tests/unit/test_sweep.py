"""A sweep from the command line (governor/cli/sweep.py): HyperQueue's --array ranges,
--each-line, {it}-style placeholders, and the QCG-PilotJob job they become."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hpilot.governor.cli.sweep import SweepOptions, job_from_command, jobs_from_file, parse_array, requests_for
from hpilot.governor.core.jobspec import parse_job
from hpilot.governor.errors import UserError


@pytest.mark.parametrize("text, want", [
    ("0-99", range(0, 100)),
    ("5", range(5, 6)),
    ("1,3,7-9", [1, 3, 7, 8, 9]),
    ("0-100:10", [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    ("2-6:2,9", [2, 4, 6, 9]),
])
def test_parse_array(text: str, want: Any) -> None:
    assert parse_array(text) == want


@pytest.mark.parametrize("text, why", [("", "not a number"), ("a-b", "not a number"), ("5-1", "empty"),
                                       ("0-9:0", "empty"), ("1,1", "twice"), ("-3", "not a number")])
def test_parse_array_errors(text: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        parse_array(text)


def test_one_command() -> None:
    job = job_from_command(["./sim", "--fast", "awk '{print $1}'"], SweepOptions(), "/w")
    assert job == {"name": "sim", "execution": {"exec": "./sim", "args": ["--fast", "awk '{print $1}'"], "wd": "/w"}}
    assert parse_job(job)[1] == []


def test_array_with_placeholders_and_cores() -> None:
    o = SweepOptions(array="0-9", cores=2, wt="1m", stdout="out/{it}.txt", name="scan")
    job = job_from_command(["sim", "--seed", "{it}", "--job={jname}", "{unknown}"], o, "/w")
    assert job["name"] == "scan" and job["iteration"] == {"start": 0, "stop": 10}
    assert job["execution"]["args"] == ["--seed", "${it}", "--job=${jname}", "{unknown}"]
    assert job["execution"]["stdout"] == "out/${it}.txt"
    assert job["resources"] == {"numCores": {"exact": 2}, "wt": "1m"}
    spec, errors = parse_job(job)
    assert errors == [] and spec is not None


def test_array_with_gaps_is_values() -> None:
    job = job_from_command(["sim", "{it}"], SweepOptions(array="1,5"), "/w")
    assert job["iteration"] == {"values": ["1", "5"]}
    assert job["execution"]["args"] == ["${itval}"]  # the number itself, not its index


def test_each_line(tmp_path: Path) -> None:
    f = tmp_path / "params.txt"
    f.write_text("a 1\n\nb 2\r\n   \nc\n")
    job = job_from_command(["sim", "{it}"], SweepOptions(each_line=str(f)), "/w")
    assert job["iteration"] == {"values": ["a 1", "b 2", "c"]}
    assert job["execution"]["args"] == ["${itval}"]  # the line
    with pytest.raises(UserError, match="cannot read"):
        job_from_command(["sim"], SweepOptions(each_line=str(tmp_path / "nope")), "/w")
    (tmp_path / "empty").write_text("\n\n")
    with pytest.raises(UserError, match="no non-empty line"):
        job_from_command(["sim"], SweepOptions(each_line=str(tmp_path / "empty")), "/w")


def test_names_do_not_clash() -> None:
    assert job_from_command(["/bin/sim"], SweepOptions(), "/w", taken={"sim", "sim-2"})["name"] == "sim-3"


def test_bad_combinations() -> None:
    with pytest.raises(UserError, match="give one of them"):
        job_from_command(["x"], SweepOptions(array="1", each_line="f"), "/w")
    with pytest.raises(UserError, match="at least 1"):
        job_from_command(["x"], SweepOptions(cores=0), "/w")
    with pytest.raises(UserError, match="--array, --cores.*after --"):
        SweepOptions(array="1", cores=2).refuse_without_command()
    SweepOptions().refuse_without_command()


def test_requests_for_a_run() -> None:
    reqs = requests_for(["true"], SweepOptions(array="0-1"), "/w")
    assert reqs[0]["request"] == "submit" and reqs[1] == {"request": "control", "command": "finishAfterAllTasksDone"}


def test_jobs_from_file_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = {"name": "a", "execution": {"exec": "true"}}
    f = tmp_path / "reqs.json"
    f.write_text(json.dumps([{"request": "submit", "jobs": [job]}]))
    assert jobs_from_file(str(f)) == [job]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps([job])))
    assert jobs_from_file("-") == [job]
    monkeypatch.setattr("sys.stdin", io.StringIO("[{"))
    with pytest.raises(UserError, match=r"stdin:1:3: not valid JSON"):
        jobs_from_file("-")
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps([{"name": "x", "execution": {}}])))
    with pytest.raises(UserError, match="stdin: .*execution"):
        jobs_from_file("-")
    monkeypatch.setattr("sys.stdin", io.StringIO("[]"))
    with pytest.raises(UserError, match="no job"):
        jobs_from_file("-")
