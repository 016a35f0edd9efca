"""Real runs of QCG-PilotJob request files through the ``hpilot`` command line.

Every test starts the real command (``python -m hpilot.governor``) in a temporary
working directory and checks what the jobs really did: files they wrote, the
environment they saw, the order they ran in, and the run directory hpilot leaves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import psutil
import pytest

from tests.conftest import latest_run, report_entries, run_hpilot, submit, wait_for, write_requests

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Seconds for one hpilot command; every test here needs far less. Shorter than the 30 s sleeps
# below: a command that returns at all did not wait for them (no test here times itself).
TIMEOUT = 25.0


# ---- helpers ----


def hp(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None,
       timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run hpilot and check it never shows a Python traceback."""
    proc = run_hpilot(args, cwd, timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    return proc


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def run_jobs(wd: Path, requests: List[Dict[str, Any]], *extra: str, expect: int = 0,
             env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Write ``requests`` to wd/jobs.json, run them with ``hpilot run`` and check the exit status."""
    write_requests(wd / "jobs.json", requests)
    proc = hp(["run", "jobs.json", *extra], wd, env=env)
    assert proc.returncode == expect, describe(proc)
    return proc


def job(name: str, execution: Dict[str, Any], **more: Any) -> Dict[str, Any]:
    return {"name": name, "execution": execution, **more}


def read_env(path: Path) -> Dict[str, str]:
    """Parse the output of ``env -0``."""
    out: Dict[str, str] = {}
    for item in path.read_bytes().decode().split("\0"):
        if "=" in item:
            key, _, val = item.partition("=")
            out.setdefault(key, val)
    return out


def final_status(wd: Path) -> Dict[str, Any]:
    return json.loads((latest_run(wd) / "final_status").read_text())


def service_log(wd: Path) -> str:
    return (latest_run(wd) / "service.log").read_text()


def processes_with(token: str) -> List[int]:
    """Live (non-zombie) processes whose command line mentions ``token``."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and token in " ".join(p.info["cmdline"] or ()):
                found.append(p.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def unique_sleep() -> str:
    """A ``sleep 30.xxxxxx`` argument no other test uses: lets us find the process."""
    return f"30.{uuid.uuid4().int % 10**9:09d}"


def stamps(wd: Path, name: str) -> List[float]:
    return [float(x) for x in (wd / f"{name}.t").read_text().split()]


def timed(name: str, after: Optional[List[str]] = None) -> Dict[str, Any]:
    """A job writing its start and end times, with a short run in between."""
    script = f"date +%s.%N > {name}.t; sleep 0.3; date +%s.%N >> {name}.t"
    j = job(name, {"script": script})
    if after:
        j["dependencies"] = {"after": after}
    return j


# ---- the example and the basics ----


def test_example_sweep_runs(wd: Path) -> None:
    shutil.copy(REPO / "configs" / "example-sweep.json", wd / "example-sweep.json")
    proc = hp(["run", "example-sweep.json", "--report-format", "json"], wd)
    assert proc.returncode == 0, describe(proc)
    results = wd / "results"
    assert (results / "prepare.txt").read_text().startswith("prepared on ")
    for i in range(8):
        text = (results / f"sweep-{i}.txt").read_text()
        # auto local mode binds tasks, so QCG_PM_CPU_SET names the core
        assert re.fullmatch(rf"iteration {i} on cores \d+\n", text), text
    assert (results / "collected.txt").read_text().strip() == "8"
    entries = report_entries(wd)
    assert {n: e["state"] for n, e in entries.items()} == {
        "prepare": "SUCCEED", "sweep": "SUCCEED", "collect": "SUCCEED"}
    assert entries["sweep"]["iterations"]["total"] == 8


def test_stdin_stdout_stderr_redirection(wd: Path) -> None:
    (wd / "in.txt").write_text("hello pilot\n")
    run_jobs(wd, submit(job("io", {
        "exec": "/bin/sh", "args": ["-c", "tr a-z A-Z; echo to-stderr >&2"],
        "stdin": "in.txt", "stdout": "out.txt", "stderr": "err.txt",
    })), "--nodes", "2")
    assert (wd / "out.txt").read_text() == "HELLO PILOT\n"
    assert (wd / "err.txt").read_text() == "to-stderr\n"


def test_same_file_for_stdout_and_stderr(wd: Path) -> None:
    run_jobs(wd, submit(job("both", {
        "script": "echo one; echo two >&2; echo three", "stdout": "all.txt", "stderr": "all.txt",
    })), "--nodes", "2")
    assert (wd / "all.txt").read_text().split() == ["one", "two", "three"]


def test_job_wd_is_relative_to_service_wd_and_created(tmp_path: Path) -> None:
    # run from tmp_path with a relative --wd: the job's relative wd hangs below --wd
    service_wd = tmp_path / "service"
    (tmp_path / "in.txt").write_text("abc\n")
    reqs = submit(job("place", {
        "script": "pwd > where.txt; cat > copy.txt",
        "wd": "sub/deep", "stdin": "../../../in.txt", "stdout": "out.txt",
    }))
    write_requests(tmp_path / "jobs.json", reqs)
    proc = hp(["run", "jobs.json", "--wd", "service", "--nodes", "2"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    deep = service_wd / "sub" / "deep"
    assert deep.is_dir()
    assert Path((deep / "where.txt").read_text().strip()).resolve() == deep.resolve()
    assert (deep / "copy.txt").read_text() == "abc\n"  # stdin relative to the job's wd
    assert (deep / "out.txt").exists()  # stdout relative to the job's wd
    assert (service_wd / ".hpilot" / "latest" / "service.log").exists()
    assert not (tmp_path / ".hpilot").exists()


def test_env_from_the_job(wd: Path) -> None:
    run_jobs(wd, submit(job("e", {
        "exec": "/bin/sh", "args": ["-c", 'printf "%s|%s" "$MY_VAR" "$OTHER" > env.txt'],
        "env": {"MY_VAR": "value with spaces", "OTHER": "cores=${ncores}"},
    }, resources={"numCores": {"exact": 2}})), "--nodes", "4")
    assert (wd / "env.txt").read_text() == "value with spaces|cores=2"


def test_job_env_is_passed_to_a_script(wd: Path) -> None:
    run_jobs(wd, submit(job("s", {"script": "echo $GREETING > g.txt", "env": {"GREETING": "hi"}})),
             "--nodes", "2")
    assert (wd / "g.txt").read_text() == "hi\n"


# ---- the task environment ----


def _env_job(wd: Path, *extra: str) -> Dict[str, str]:
    run_jobs(wd, submit(job("envjob", {"script": "env -0 > env.bin"},
                            resources={"numNodes": {"exact": 2}, "numCores": {"exact": 2}})),
             "--nodes", "n1:2,n2:2", *extra)
    return read_env(wd / "env.bin")


def test_task_environment_qcg_and_hpilot(wd: Path) -> None:
    env = _env_job(wd)
    want = {"NNODES": "2", "NPROCS": "4", "NTASKS": "4", "NODELIST": "n1,n2", "TASKS_PER_NODE": "2,2"}
    for key, val in want.items():
        assert env.get(f"QCG_PM_{key}") == val, (key, env.get(f"QCG_PM_{key}"))
        assert env.get(f"HPILOT_{key}") == val, (key, env.get(f"HPILOT_{key}"))
    assert env.get("QCG_PM_STEP_ID"), "QCG_PM_STEP_ID missing or empty"
    assert env.get("HPILOT_STEP_ID") == env["QCG_PM_STEP_ID"]
    if "SLURM_NTASKS" not in os.environ:
        assert "SLURM_NTASKS" not in env, "SLURM_* set without --envschema slurm"


def test_task_environment_slurm_schema(wd: Path) -> None:
    env = _env_job(wd, "--envschema", "slurm")
    want = {
        "SLURM_NNODES": "2", "SLURM_NODELIST": "n1,n2", "SLURM_NPROCS": "4", "SLURM_NTASKS": "4",
        "SLURM_JOB_NODELIST": "n1,n2", "SLURM_JOB_NUM_NODES": "2", "SLURM_STEP_NODELIST": "n1,n2",
        "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NUM_TASKS": "4", "SLURM_NTASKS_PER_NODE": "2,2",
        "SLURM_STEP_TASKS_PER_NODE": "2,2",
    }
    assert {k: env.get(k) for k in want} == want
    # the manual gives both spellings: "2,2" (ch. 8.1) and "n1(x2),n2(x2)" (default model)
    assert env.get("SLURM_TASKS_PER_NODE") in ("2,2", "n1(x2),n2(x2)")
    assert env.get("QCG_PM_NPROCS") == "4"


def test_step_ids_differ_between_tasks(wd: Path) -> None:
    run_jobs(wd, submit(job("it", {"script": "echo $QCG_PM_STEP_ID > step-${it}.txt"},
                            iteration={"stop": 3})), "--nodes", "2")
    ids = [(wd / f"step-{i}.txt").read_text().strip() for i in range(3)]
    assert all(ids) and len(set(ids)) == 3, ids


# ---- variables and iterations ----


def test_variables_in_args_and_stdout_names(wd: Path) -> None:
    day_before = time.strftime("%Y-%m-%d")
    args = ["it=${it}", "jname=${jname}", "ncores=${ncores}", "nnodes=${nnodes}", "nlist=${nlist}",
            "root_wd=${root_wd}", "rcnt=${rcnt}", "date=${date}", "uniq=${uniq}"]
    reqs: List[Dict[str, Any]] = [
        {"request": "submit", "jobs": [job("v", {
            "exec": "/bin/echo", "args": args, "stdout": "out-${it}-${ncores}-${nnodes}-${nlist}.txt",
        }, iteration={"start": 1, "stop": 3}, resources={"numCores": {"exact": 2}})]},
        {"request": "submit", "jobs": [job("w", {
            "exec": "/bin/echo", "args": ["second"], "stdout": "w-${rcnt}-${date}.txt"})]},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    run_jobs(wd, reqs, "--nodes", "nA:4")
    day_after = time.strftime("%Y-%m-%d")
    uniqs = []
    for i in (1, 2):
        out = wd / f"out-{i}-2-1-nA.txt"
        assert out.exists(), sorted(p.name for p in wd.iterdir())
        fields = dict(f.split("=", 1) for f in out.read_text().split())
        assert fields["it"] == str(i)
        assert fields["jname"] == "v"  # the job's name, as QCG-PilotJob (the iteration is ${it})
        assert fields["ncores"] == "2" and fields["nnodes"] == "1" and fields["nlist"] == "nA"
        assert Path(fields["root_wd"]).resolve() == wd.resolve()
        assert fields["rcnt"] == "1"
        assert fields["date"] in (day_before, day_after)
        assert fields["uniq"] and "${" not in fields["uniq"]
        uniqs.append(fields["uniq"])
    assert uniqs[0] == uniqs[1], "${uniq} is one per submit request (QCG-PilotJob's)"
    second = [p.name for p in wd.glob("w-*.txt")]
    assert second in ([f"w-2-{day_before}.txt"], [f"w-2-{day_after}.txt"]), second


def test_iteration_values(wd: Path) -> None:
    run_jobs(wd, submit(job("vals", {"exec": "/bin/echo", "args": ["value ${itval}"], "stdout": "v-${it}.txt"},
                            iteration={"values": ["alpha", "beta", "gamma"]})), "--nodes", "2",
             "--report-format", "json")
    for i, v in enumerate(("alpha", "beta", "gamma")):  # ${it} the index, ${itval} the value
        assert (wd / f"v-{i}.txt").read_text() == f"value {v}\n"
    assert report_entries(wd)["vals"]["iterations"]["total"] == 3


def test_num_cores_min_max_takes_all_free(wd: Path) -> None:
    run_jobs(wd, submit(job("mm", {"script": "echo $QCG_PM_NPROCS ${ncores} > mm.txt"},
                            resources={"numCores": {"min": 1, "max": 4}})), "--nodes", "n1:4")
    assert (wd / "mm.txt").read_text().split() == ["4", "4"]


# ---- dependencies and failures ----


def test_chain_runs_in_order(wd: Path) -> None:
    run_jobs(wd, submit(timed("c1"), timed("c2", ["c1"]), timed("c3", ["c2"])), "--nodes", "4")
    c1, c2, c3 = (stamps(wd, n) for n in ("c1", "c2", "c3"))
    assert c1[1] <= c2[0], (c1, c2)
    assert c2[1] <= c3[0], (c2, c3)


def test_dependency_on_a_job_listed_later_in_the_same_submit(wd: Path) -> None:
    # the validator accepts names from anywhere in the submit ("submitted before or in this submit")
    run_jobs(wd, submit(timed("c3", ["c2"]), timed("c2", ["c1"]), timed("c1")), "--nodes", "4")
    c1, c2, c3 = (stamps(wd, n) for n in ("c1", "c2", "c3"))
    assert c1[1] <= c2[0], (c1, c2)
    assert c2[1] <= c3[0], (c2, c3)


def test_dependency_on_single_iterations(wd: Path) -> None:
    run_jobs(wd, submit(
        job("sw", {"script": "test ${it} != 2"}, iteration={"stop": 3}),
        job("on1", {"script": "touch on1-ran"}, dependencies={"after": ["sw:1"]}),
        job("on2", {"script": "touch on2-ran"}, dependencies={"after": ["sw:2"]}),
        job("onall", {"script": "touch onall-ran"}, dependencies={"after": ["sw"]}),
    ), "--nodes", "2", "--report-format", "json", expect=1)
    states = {n: e["state"] for n, e in report_entries(wd).items()}
    assert states == {"sw": "FAILED", "on1": "SUCCEED", "on2": "OMITTED", "onall": "OMITTED"}
    assert (wd / "on1-ran").exists()
    assert not (wd / "on2-ran").exists() and not (wd / "onall-ran").exists()


def test_diamond_runs_in_order(wd: Path) -> None:
    run_jobs(wd, submit(timed("top"), timed("left", ["top"]), timed("right", ["top"]),
                        timed("bottom", ["left", "right"])), "--nodes", "4")
    top, left, right, bottom = (stamps(wd, n) for n in ("top", "left", "right", "bottom"))
    assert top[1] <= left[0] and top[1] <= right[0], (top, left, right)
    assert max(left[1], right[1]) <= bottom[0], (left, right, bottom)
    # with 4 free cores the two middle jobs are ready together and run side by side
    assert left[0] < right[1] and right[0] < left[1], (left, right)


def test_failing_job_fails_and_dependants_are_omitted(wd: Path) -> None:
    run_jobs(wd, submit(
        job("bad", {"script": "exit 3"}),
        job("child", {"script": "touch child-ran"}, dependencies={"after": ["bad"]}),
        job("grandchild", {"script": "touch grandchild-ran"}, dependencies={"after": ["child"]}),
        job("independent", {"script": "touch independent-ran"}),
    ), "--nodes", "2", "--report-format", "json", expect=1)
    entries = report_entries(wd)
    states = {n: e["state"] for n, e in entries.items()}
    assert states == {"bad": "FAILED", "child": "OMITTED", "grandchild": "OMITTED", "independent": "SUCCEED"}
    assert entries["bad"]["runtime"]["exit_code"] == "3"
    assert any("exit code 3" in m for m in entries["bad"].get("messages", [])), entries["bad"]
    assert not (wd / "child-ran").exists() and not (wd / "grandchild-ran").exists()
    assert (wd / "independent-ran").exists()
    fs = final_status(wd)
    assert fs["exit_status"] == 1
    assert fs["jobs"] == {"FAILED": 1, "OMITTED": 2, "SUCCEED": 1}


def test_wall_time_kills_the_task(wd: Path) -> None:
    run_jobs(wd, submit(job("slow", {"exec": "sleep", "args": ["30"]}, resources={"wt": "1s"})),
             "--nodes", "2", "--report-format", "json", expect=1)
    entry = report_entries(wd)["slow"]
    assert entry["state"] == "FAILED"
    assert entry["runtime"]["exit_code"] == "143", entry  # SIGTERM ended the sleep, it did not end by itself
    assert any("wall time" in m for m in entry.get("messages", [])), entry


def test_cancel_in_the_file_stops_a_job_and_omits_its_dependant(wd: Path) -> None:
    """The file's requests are all answered before anything starts (an answer never waits for
    process starts), so the cancel finds the job not yet started; that a cancel kills a running
    task is shown through the API (tests/integration/test_api.py) and the core's tests."""
    token = unique_sleep()
    reqs: List[Dict[str, Any]] = [
        {"request": "submit", "jobs": [
            job("sleeper", {"script": f"sleep {token}; touch marker"}),
            job("after", {"script": "touch after-ran"}, dependencies={"after": ["sleeper"]}),
        ]},
        {"request": "cancelJob", "jobNames": ["sleeper"]},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    run_jobs(wd, reqs, "--nodes", "2", "--report-format", "json", expect=1)  # within TIMEOUT: did not wait
    assert not (wd / "marker").exists(), "the canceled job's sleep ran to its end"
    entries = report_entries(wd)
    assert entries["sleeper"]["state"] == "CANCELED"
    assert entries["after"]["state"] == "OMITTED"
    assert not (wd / "marker").exists()
    assert not (wd / "after-ran").exists()
    wait_for(lambda: not processes_with(token), timeout=5, what="the canceled sleep to be gone")


def test_remove_canceled_job_then_resubmit_same_name(wd: Path) -> None:
    reqs: List[Dict[str, Any]] = [
        {"request": "submit", "jobs": [
            job("first", {"exec": "/bin/true"}),
            job("again", {"script": "touch old-version"}, dependencies={"after": ["first"]}),
        ]},
        {"request": "cancelJob", "jobNames": ["again"]},  # still QUEUED: canceled at once
        {"request": "removeJob", "jobNames": ["again"]},
        {"request": "submit", "jobs": [job("again", {"script": "touch new-version"})]},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    run_jobs(wd, reqs, "--nodes", "2", "--report-format", "json")
    assert (wd / "new-version").exists()
    assert not (wd / "old-version").exists()
    assert report_entries(wd)["again"]["state"] == "SUCCEED"  # the last entry of that name
    log = service_log(wd)
    assert "request #3 (removeJob)" in log and "request #4 (submit)" in log


def test_remove_unknown_or_active_job_is_an_error(wd: Path) -> None:
    reqs: List[Dict[str, Any]] = [
        {"request": "submit", "jobs": [job("busy", {"script": "touch busy-ran"})]},
        {"request": "removeJob", "jobNames": ["ghost"]},
        {"request": "removeJob", "jobNames": ["busy"]},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    proc = run_jobs(wd, reqs, "--nodes", "2", expect=2)
    log = service_log(wd)
    assert re.search(r"ERROR .*request #2 \(removeJob\): .*'ghost'", log), log
    assert re.search(r"ERROR .*request #3 \(removeJob\): .*'busy'", log), log
    assert "ghost" in proc.stderr and "busy" in proc.stderr
    assert (wd / "busy-ran").exists()  # the accepted job still ran
    assert final_status(wd)["exit_status"] == 2


# ---- read-only requests ----

QUERIES: List[Dict[str, Any]] = [
    {"request": "listJobs"},
    {"request": "jobStatus", "jobNames": ["q"]},
    {"request": "jobInfo", "jobNames": ["q"]},
    {"request": "resourcesInfo"},
    {"request": "status"},
]


def test_query_requests_are_accepted(wd: Path) -> None:
    reqs: List[Dict[str, Any]] = [{"request": "submit", "jobs": [job("q", {"exec": "/bin/true"})]}, *QUERIES,
            {"request": "control", "command": "finishAfterAllTasksDone"}]
    proc = run_jobs(wd, reqs, "--nodes", "4,2,2")
    assert "refused" not in proc.stdout + proc.stderr
    log = service_log(wd)
    for i, q in enumerate(QUERIES, start=2):
        assert f"request #{i} ({q['request']})" in log, log
    assert "ERROR" not in log


def test_query_responses_appear_in_service_log(wd: Path) -> None:
    """Manual 10.2: 'In the file mode, QCG-PilotJob Manager outputs all responses to the log file.'"""
    reqs: List[Dict[str, Any]] = [{"request": "submit", "jobs": [job("q", {"exec": "/bin/true"})]}, *QUERIES,
            {"request": "control", "command": "finishAfterAllTasksDone"}]
    run_jobs(wd, reqs, "--nodes", "4,2,2")
    log = service_log(wd)
    assert re.search(r"total_cores['\"]?:\s*8\b", log), f"no resourcesInfo answer in service.log:\n{log}"
    assert "free_cores" in log, "no resourcesInfo answer"
    assert "JobStats" in log, "no status answer"
    assert "jobName" in log, "no jobStatus answer"
    assert "history" in log, "no jobInfo answer"
    assert "length" in log, "no listJobs answer"


# ---- the service command (QCG semantics) ----


def test_service_without_finish_request_ends_after_reading(wd: Path) -> None:
    token = unique_sleep()
    write_requests(wd / "jobs.json", submit(job("long", {"script": f"sleep {token}; touch marker"}),
                                            finish=False))
    proc = hp(["service", "--file-path", "jobs.json", "--nodes", "2", "--report-format", "json"], wd)
    assert proc.returncode == 1, describe(proc)  # within TIMEOUT: the running job did not keep it alive
    assert report_entries(wd)["long"]["state"] == "CANCELED"
    assert not (wd / "marker").exists()
    assert "finishAfterAllTasksDone" in service_log(wd)  # the warning explains why it stopped
    wait_for(lambda: not processes_with(token), timeout=5, what="the killed sleep to be gone")


def test_service_with_finish_request_waits_for_jobs(wd: Path) -> None:
    write_requests(wd / "jobs.json", submit(job("short", {"script": "sleep 0.3; touch done.txt"})))
    proc = hp(["service", "--file-path", "jobs.json", "--nodes", "2"], wd)
    assert proc.returncode == 0, describe(proc)
    assert (wd / "done.txt").exists()


# ---- modules and venv ----


def test_modules_are_loaded(wd: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    log = tmp_path / "module.log"
    module = bin_dir / "module"
    module.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    module.chmod(module.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    run_jobs(wd, submit(job("mod", {"script": "touch mod-ran", "modules": ["foo/1.0"]})), "--nodes", "2",
             env={"PATH": path})
    assert (wd / "mod-ran").exists()
    assert log.exists(), "the module command was not run"
    assert log.read_text().split() == ["load", "foo/1.0"]


def test_venv_is_activated(wd: Path, tmp_path: Path) -> None:
    venv = tmp_path / "fakevenv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("export FAKE_VENV_MARK=activated-here\n")
    run_jobs(wd, submit(
        job("vexec", {"exec": "/bin/sh", "args": ["-c", "echo $FAKE_VENV_MARK > exec.txt"], "venv": str(venv)}),
        job("vscript", {"script": "echo $FAKE_VENV_MARK > script.txt", "venv": str(venv)}),
    ), "--nodes", "2")
    assert (wd / "exec.txt").read_text() == "activated-here\n"
    assert (wd / "script.txt").read_text() == "activated-here\n"


# ---- the run directory and output options ----


def test_run_dir_files_text_report(wd: Path) -> None:
    proc = run_jobs(wd, submit(job("one", {"exec": "/bin/true"}), job("two", {"script": "exit 0"})),
                    "--nodes", "2")
    run = latest_run(wd)
    assert run.parent == wd / ".hpilot" and run.is_dir()
    assert str(run) in proc.stdout  # the summary names the run dir
    assert (run / "service.log").read_text().strip()
    report = (run / "jobs.report").read_text()
    assert re.search(r"^one \(SUCCEED\)$", report, re.M) and re.search(r"^two \(SUCCEED\)$", report, re.M)
    with pytest.raises(json.JSONDecodeError):
        json.loads(report.splitlines()[0])
    fs = final_status(wd)
    assert fs["exit_status"] == 0
    assert fs["jobs"] == {"SUCCEED": 2}
    assert fs["total_jobs"] == 2


def test_run_dir_json_report_and_final_status(wd: Path) -> None:
    run_jobs(wd, submit(job("ok", {"exec": "/bin/true"}), job("ko", {"script": "exit 5"})),
             "--nodes", "2", "--report-format", "json", expect=1)
    entries = report_entries(wd)
    assert entries["ok"]["state"] == "SUCCEED" and entries["ko"]["state"] == "FAILED"
    assert entries["ko"]["runtime"]["exit_code"] == "5"
    fs = final_status(wd)
    assert fs["exit_status"] == 1
    assert fs["jobs"] == {"SUCCEED": 1, "FAILED": 1}


def test_report_file_name(wd: Path) -> None:
    run_jobs(wd, submit(job("r", {"exec": "/bin/true"})), "--nodes", "2", "--report-file", "my-jobs.txt")
    run = latest_run(wd)
    assert "r (SUCCEED)" in (run / "my-jobs.txt").read_text()
    assert not (run / "jobs.report").exists()


def test_show_progress(wd: Path) -> None:
    proc = run_jobs(wd, submit(job("p", {"exec": "/bin/true"}, iteration={"stop": 3})), "--nodes", "2",
                    "--show-progress")
    lines = [ln for ln in proc.stderr.splitlines() if "done" in ln]
    assert lines, proc.stderr
    assert "3/3 done" in lines[-1], lines
    quiet = run_jobs(wd, submit(job("p", {"exec": "/bin/true"})), "--nodes", "2")
    assert "done" not in quiet.stderr


def test_log_level(wd: Path) -> None:
    run_jobs(wd, submit(job("d", {"exec": "/bin/true"})), "--nodes", "2", "--log", "error")
    assert " INFO " not in service_log(wd)
    run_jobs(wd, submit(job("d", {"exec": "/bin/true"})), "--nodes", "2", "--log", "debug")
    assert " INFO " in service_log(wd)


# ---- resources ----


def test_system_core_keeps_one_core(wd: Path) -> None:
    reqs: List[Dict[str, Any]] = [
        {"request": "submit", "jobs": [job("four", {"script": "touch four-ran"},
                                           resources={"numCores": {"exact": 4}})]},
        {"request": "submit", "jobs": [job("three", {"script": "echo $QCG_PM_NPROCS > three.txt"},
                                           resources={"numCores": {"exact": 3}})]},
        {"request": "control", "command": "finishAfterAllTasksDone"},
    ]
    proc = run_jobs(wd, reqs, "--nodes", "4", "--system-core", expect=2)
    assert "job 'four'" in proc.stderr and "resources.numCores" in proc.stderr
    assert not (wd / "four-ran").exists()
    assert (wd / "three.txt").read_text().strip() == "3"
    assert final_status(wd)["resources"]["total_cores"] == 3


def test_system_core_in_auto_local_mode(wd: Path) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs at least 2 allowed CPUs")
    run_jobs(wd, submit(job("a", {"exec": sys.executable, "args": [
        "-c", "import os; print(' '.join(map(str, sorted(os.sched_getaffinity(0)))))"], "stdout": "a-${it}.txt"},
        iteration={"stop": 2})), "--system-core")
    for i in range(2):
        cpus = [int(c) for c in (wd / f"a-{i}.txt").read_text().split()]
        assert len(cpus) == 1 and cpus[0] in allowed[1:], (cpus, allowed)


def test_nodes_list_gives_total_cores(wd: Path) -> None:
    run_jobs(wd, submit(job("all8", {"script": "env -0 > env.bin"}, resources={"numCores": {"exact": 8}})),
             "--nodes", "4,2,2")
    env = read_env(wd / "env.bin")
    assert env.get("QCG_PM_NPROCS") == "8"
    assert env.get("QCG_PM_NNODES") == "3"
    assert env.get("QCG_PM_NODELIST") == "n0,n1,n2"
    assert env.get("QCG_PM_TASKS_PER_NODE") == "4,2,2"
    assert final_status(wd)["resources"]["total_cores"] == 8


def test_node_crs_gpu_from_toml(wd: Path) -> None:
    (wd / "gpu.toml").write_text('[[node]]\nname = "g1"\ncores = 2\ngpu = [3, 5]\n')
    run_jobs(wd, submit(
        job("two", {"script": "echo $CUDA_VISIBLE_DEVICES $QCG_PM_NODELIST > two.txt"},
            resources={"nodeCrs": {"gpu": 2}}),
        job("one", {"script": "echo $CUDA_VISIBLE_DEVICES > one.txt"},
            resources={"nodeCrs": {"gpu": 1}}, dependencies={"after": ["two"]}),
    ), "--config", "gpu.toml")
    assert (wd / "two.txt").read_text().split() == ["3,5", "g1"]
    assert (wd / "one.txt").read_text().strip() in ("3", "5")


def test_cpu_binding_in_auto_local_mode(wd: Path) -> None:
    allowed = set(os.sched_getaffinity(0))
    code = ("import os; print(' '.join(map(str, sorted(os.sched_getaffinity(0)))));"
            "print(os.environ.get('QCG_PM_CPU_SET', 'unset'))")
    run_jobs(wd, submit(job("aff", {"exec": sys.executable, "args": ["-c", code], "stdout": "aff-${it}.txt"},
                            iteration={"stop": 3})))
    for i in range(3):
        affinity, cpu_set = (wd / f"aff-{i}.txt").read_text().splitlines()
        cores = [int(c) for c in affinity.split()]
        assert len(cores) == 1 and cores[0] in allowed, (cores, allowed)
        assert cpu_set == str(cores[0]), (cpu_set, cores)
