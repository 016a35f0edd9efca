"""Resume after a kill -9 of the service, at many moments; damaged journals; bad resume targets.

Every task appends its name to ``marks`` when its work is done.  After the kill
the journal says which tasks the service had seen finish; after the resume,
each of those must have run exactly once, every other task must have run to
the end (at least once: a task running at the kill may finish as an orphan and
run again), and the report must list every job once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Dict, List, Set

import pytest
from hpilot.governor.service import journal

from tests.conftest import HPILOT, latest_run, run_hpilot, wait_for, write_requests

pytestmark = pytest.mark.integration

MARK = 'echo "${jname}" >> marks'
MARK_IT = 'echo "${jname}:${it}" >> marks'  # ${jname} is the job's name, as in QCG-PilotJob


def _workload() -> List[Dict[str, object]]:
    jobs: List[Dict[str, object]] = [
        {"name": "sweep", "iteration": {"stop": 30}, "execution": {"script": f"sleep 0.03; {MARK_IT}"}},
        {"name": "values", "iteration": {"values": ["a", "b", "c", "d", "e", "f"]},
         "execution": {"script": f"sleep 0.05; {MARK_IT}"}},
        {"name": "bad", "execution": {"script": f"{MARK}; exit 3"}},
        {"name": "dep_of_bad", "execution": {"script": MARK}, "dependencies": {"after": ["bad"]}},
    ]
    # a chain and a diamond behind the sweep
    for name, after in (("c1", ["sweep"]), ("c2", ["c1"]), ("d1", ["c2"]), ("d2", ["c2"]), ("d3", ["d1", "d2"])):
        jobs.append({"name": name, "execution": {"script": f"sleep 0.02; {MARK}"}, "dependencies": {"after": after}})
    jobs.append({"name": "per_it", "execution": {"script": MARK}, "dependencies": {"after": ["values:2"]}})
    return [{"request": "submit", "jobs": jobs}, {"request": "control", "command": "finishAfterAllTasksDone"}]


ALL_TASKS = ({f"sweep:{i}" for i in range(30)} | {f"values:{i}" for i in range(6)}
             | {"bad", "c1", "c2", "d1", "d2", "d3", "per_it"})


def _recorded_finished(wd: Path) -> Set[str]:
    rep = journal.read(str(latest_run(wd) / "journal"))
    done = set()
    for rec in journal.finished(rep.records):
        job, it = rec[0], rec[1]
        done.add(job if job in ("bad", "dep_of_bad", "c1", "c2", "d1", "d2", "d3", "per_it") else f"{job}:{it}")
    return done


def _journal_has(wd: Path, what: bytes) -> bool:
    path = wd / ".hpilot" / "latest" / "journal"
    return path.exists() and what in path.read_bytes()


def _kill_at(wd: Path, delay: float, after: bytes = b"") -> None:
    """Kill -9 the service ``delay`` seconds into its run (counted from its journal's creation,
    or from when the journal holds ``after``)."""
    proc = subprocess.Popen(HPILOT + ["run", "jobs.json", "--nodes", "2", "--report-format", "json"], cwd=wd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _journal_has(wd, after) or proc.poll() is not None, 30, "the run to start")
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def _kill_once_submitted(wd: Path) -> None:
    """Kill -9 the service once its journal holds the submit (a fixed delay may come before it on a
    loaded machine: the service is then killed before it accepted anything)."""
    proc = subprocess.Popen(HPILOT + ["run", "jobs.json", "--nodes", "2", "--report-format", "json"], cwd=wd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal_path = wd / ".hpilot" / "latest" / "journal"

    def submitted() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before it was killed")
        return journal_path.exists() and any(
            kind == "J" and rec.get("t") == "submit" for kind, rec in journal.read(str(journal_path)).records)

    try:
        wait_for(submitted, 30, "the submit in the journal")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def _marks(wd: Path) -> Counter:
    path = wd / "marks"
    return Counter(path.read_text().split()) if path.exists() else Counter()


@pytest.mark.parametrize("seed", range(20))
def test_kill_at_a_random_moment_then_resume_runs_everything_once(wd: Path, seed: int) -> None:
    write_requests(wd / "jobs.json", _workload())
    _kill_at(wd, random.Random(seed).uniform(0.0, 1.2))
    seen_done = _recorded_finished(wd)
    before = _marks(wd)
    proc = run_hpilot(["resume", "."], cwd=wd, timeout=60)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1, proc.stderr  # 'bad' fails, by design
    marks = _marks(wd)
    assert set(marks) == ALL_TASKS, f"missing: {ALL_TASKS - set(marks)}"
    for task in seen_done:
        assert marks[task] == 1, f"{task} finished before the kill and ran again (marks before: {before[task]})"
    report = [json.loads(line) for line in (latest_run(wd) / "jobs.report").read_text().splitlines()]
    names = [e["name"] for e in report]
    assert sorted(names) == sorted(set(names)), "a job is listed twice"
    states = {e["name"]: e["state"] for e in report}
    assert states["bad"] == "FAILED" and states["dep_of_bad"] == "OMITTED"
    assert all(states[n] == "SUCCEED" for n in ("sweep", "values", "c1", "c2", "d1", "d2", "d3", "per_it"))
    assert states.keys() == {"sweep", "values", "bad", "dep_of_bad", "c1", "c2", "d1", "d2", "d3", "per_it"}


def test_resume_twice_after_two_kills(wd: Path) -> None:
    write_requests(wd / "jobs.json", _workload())
    _kill_at(wd, 0.4)
    proc = subprocess.Popen(HPILOT + ["resume", "."], cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=0.4)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    seen_done = _recorded_finished(wd)
    at_kill = _marks(wd)
    final = run_hpilot(["resume", "."], cwd=wd, timeout=60)
    assert final.returncode == 1, final.stderr
    marks = _marks(wd)
    assert set(marks) == ALL_TASKS
    # a task that was running at the first kill may have run twice (orphan, then again);
    # none that was on record as finished ran after that
    assert all(marks[t] == at_kill[t] for t in seen_done), {t: (at_kill[t], marks[t]) for t in seen_done}


def _finished_run(wd: Path) -> Path:
    write_requests(wd / "jobs.json", _workload())
    run_hpilot(["run", "jobs.json", "--nodes", "2", "--report-format", "json"], cwd=wd, timeout=60)
    return latest_run(wd)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_journal_resumes_what_it_can_and_says_what_it_dropped(wd: Path, damage: str) -> None:
    run = _finished_run(wd)
    data = (run / "journal").read_bytes()
    if damage == "truncate":
        # cut inside a record, never at its end: a record short only of its newline is whole,
        # and the resume rightly keeps it (its journal ends the line before reading)
        starts = [i + 1 for i, b in enumerate(data[:-1]) if b == ord("\n")]
        rng = random.Random(7)
        line = rng.randrange(len(starts) - 1)
        cut = rng.randrange(starts[line] + 1, starts[line + 1] - 1)
        (run / "journal").write_bytes(data[:cut])
    else:
        (run / "journal").write_bytes(data + os.urandom(300))
    (wd / "marks").unlink()
    proc = run_hpilot(["resume", "."], cwd=wd, timeout=60)
    assert "Traceback" not in proc.stderr
    assert "lost records" in proc.stderr and "skipped" in proc.stderr
    assert proc.returncode == 1  # 'bad' failed again or before: never a crash
    report = [json.loads(line) for line in (latest_run(wd) / "jobs.report").read_text().splitlines()]
    assert {e["name"] for e in report} >= {"sweep", "bad"}
    assert all(e["state"] in ("SUCCEED", "FAILED", "OMITTED") for e in report)


def test_dry_run_says_what_will_happen_and_runs_nothing(wd: Path) -> None:
    write_requests(wd / "jobs.json", _workload())
    _kill_once_submitted(wd)
    # what a resume that ran anything would change: a new run directory, and 'latest' pointing at it
    # (the killed run's orphans may still append to 'marks', so that file proves nothing)
    runs_before = sorted(p.name for p in (wd / ".hpilot").iterdir())
    latest_before = latest_run(wd)
    journal_before = (latest_before / "journal").read_bytes()
    proc = run_hpilot(["resume", "--dry-run", "--json", "."], cwd=wd, timeout=30)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["jobs"] == 10 and plan["iterations"] == 44
    assert plan["iterations_done"] + plan["to_run"] == 44
    assert sorted(p.name for p in (wd / ".hpilot").iterdir()) == runs_before
    assert latest_run(wd) == latest_before
    assert (latest_before / "journal").read_bytes() == journal_before


def test_resume_of_something_that_is_not_a_run_is_a_clear_error(wd: Path) -> None:
    proc = run_hpilot(["resume", str(wd)], cwd=wd, timeout=30)
    assert proc.returncode == 2
    assert "not an hpilot run directory" in proc.stderr and "Traceback" not in proc.stderr
    bad = wd / ".hpilot" / "x"
    bad.mkdir(parents=True)
    (bad / "journal").write_bytes(journal.frame("H", '{"version": 2}'))
    proc = run_hpilot(["resume", str(bad)], cwd=wd, timeout=30)
    assert proc.returncode == 2 and "version 2" in proc.stderr


def test_resumed_service_kills_what_the_dead_one_left_running(wd: Path) -> None:
    """Refused while the previous manager runs; once it is dead, its leftovers (found by the
    run's HPILOT_RUN in their environment) are killed before anything starts."""
    import psutil

    # a sleep no other test, and no other test run on this machine, uses: only ours are found
    token = f"4242.{uuid.uuid4().int % 10**9:09d}"
    write_requests(wd / "jobs.json", [{"request": "submit", "jobs": [
        {"name": "long", "execution": {"exec": "/bin/sleep", "args": [token]}}]}])
    proc = subprocess.Popen(HPILOT + ["run", "jobs.json", "--nodes", "1"], cwd=wd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sleeper() -> List[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["/bin/sleep", token]]

    def journaled_start() -> bool:  # the resume learns of the orphan from this record: kill only after it
        path = wd / ".hpilot" / "latest" / "journal"
        return path.exists() and any(True for _ in journal.started(journal.read(str(path)).records))

    try:
        wait_for(lambda: bool(sleeper()) and journaled_start(), 30, "the task to start and be journaled")
        # its guard (launcher/guard.py) would kill the task at once: kill the guard first, so the
        # task outlives the service, as it would if the machine had killed both
        guards = [c for c in psutil.Process(proc.pid).children() if "guard.py" in " ".join(c.cmdline())]
        assert guards, "the launcher has a guard"
        for g in guards:
            g.kill()

        def dead(g: psutil.Process) -> bool:  # a zombie until the service reaps it
            try:
                return g.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(lambda: all(dead(g) for g in guards), 10, "the guard to die")
        refused = run_hpilot(["resume", "."], cwd=wd, timeout=60)  # the previous manager still runs
        assert refused.returncode == 2, refused.stderr
        assert f"the previous manager of this run is still running (pid {proc.pid}" in refused.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert sleeper(), "the orphan should outlive the killed service and guard"
    resumed = subprocess.Popen(HPILOT + ["resume", "."], cwd=wd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    def only_the_new_one() -> bool:
        found = sleeper()
        try:
            return len(found) == 1 and found[0].ppid() == resumed.pid
        except psutil.NoSuchProcess:
            return False

    try:
        wait_for(only_the_new_one, 30, "the old task gone and the new one started")
    finally:
        resumed.send_signal(signal.SIGTERM)
        resumed.wait(timeout=15)
        for p in sleeper():
            p.kill()
    assert sys.platform.startswith("linux")
