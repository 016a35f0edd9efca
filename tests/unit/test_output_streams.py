"""Streamed task output (launcher/output.py) with real processes through the local launcher.

Every test runs with both spawn paths (posix_spawn in the service's wd, Popen elsewhere),
since each hands the pipes to the child its own way.
"""

from __future__ import annotations

import os
import select
import stat
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from hpilot.launcher.core import LaunchRequest, TaskExit
from hpilot.launcher.local import LocalLauncher
from hpilot.launcher.output import TAIL_LINES, OutputStreams, read_output, scan, tail_text

from tests.conftest import wait_for

pytestmark = pytest.mark.shell  # real processes: not in the core tier


class Runner:
    def __init__(self, wd: Path, out_dir: Path, tag: str = "t") -> None:
        self.wd = wd
        self.exits: Dict[str, TaskExit] = {}
        self.streams = OutputStreams(str(out_dir), tag)
        self.launcher = LocalLauncher(grace=0.2, output=self.streams)

    def poll(self) -> None:
        for ev in self.launcher.poll():
            if isinstance(ev, TaskExit):
                assert ev.task_id not in self.exits
                self.exits[ev.task_id] = ev

    def launch(self, task_id: str, argv: List[str], **kw: Any) -> None:
        self.launcher.launch(LaunchRequest(task_id, tuple(argv), None, str(kw.pop("wd", self.wd)), **kw))
        self.launcher.start_queued()

    def sh(self, task_id: str, script: str, **kw: Any) -> None:
        self.launch(task_id, ["/bin/bash", "-c", script], **kw)

    def wait(self, *task_ids: str, timeout: float = 20.0) -> None:
        def done() -> bool:
            self.poll()
            return all(t in self.exits for t in task_ids)

        wait_for(done, timeout, f"exits of {task_ids}")

    def close(self) -> None:
        self.launcher.close()


@pytest.fixture(params=["popen", "posix_spawn"])
def run(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    if request.param == "posix_spawn":
        monkeypatch.chdir(tmp_path)
        wd = tmp_path
    else:
        wd = tmp_path / "wd"
    r = Runner(wd, tmp_path / "output")
    yield r
    r.close()


def output_of(out_dir: Path, task: str, kind: str = "o") -> List[bytes]:
    by_task, notes = read_output(str(out_dir), lambda t: t == task)
    assert not notes, notes
    return [a.text(kind) for a in by_task.get(task, [])]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_every_tasks_output_goes_into_one_file_readable_by_its_owner_only(run: Runner, tmp_path: Path) -> None:
    for i in range(20):
        run.sh(f"sweep:{i}", f"echo out {i}; echo err {i} >&2; echo more {i}")
    run.wait(*(f"sweep:{i}" for i in range(20)))
    run.streams.flush()
    out = tmp_path / "output"
    assert [p.name for p in out.iterdir()] == ["t.out"]
    assert stat.S_IMODE((out / "t.out").stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for i in range(20):
        assert output_of(out, f"sweep:{i}") == [f"out {i}\nmore {i}\n".encode()]
        assert output_of(out, f"sweep:{i}", "e") == [f"err {i}\n".encode()]
    assert all(ex.ok and ex.stderr_tail is None for ex in run.exits.values())


def test_a_job_that_names_its_files_keeps_them_and_streams_only_the_other(run: Runner, tmp_path: Path) -> None:
    run.wd.mkdir(exist_ok=True)
    run.sh("named", "echo to-file; echo to-stream >&2", stdout=str(run.wd / "named.out"))
    run.sh("both", "echo a; echo b >&2", stdout=str(run.wd / "both.out"), stderr=str(run.wd / "both.err"))
    run.sh("same", "echo a; echo b >&2", stdout=str(run.wd / "same.out"), stderr=str(run.wd / "same.out"))
    run.wait("named", "both", "same")
    run.streams.flush()
    assert (run.wd / "named.out").read_text() == "to-file\n"
    assert output_of(tmp_path / "output", "named", "e") == [b"to-stream\n"]
    assert output_of(tmp_path / "output", "named", "o") == [b""]
    assert ((run.wd / "both.out").read_text(), (run.wd / "both.err").read_text()) == ("a\n", "b\n")
    assert (run.wd / "same.out").read_text() == "a\nb\n"
    by_task, _ = read_output(str(tmp_path / "output"), lambda t: t in ("both", "same"))
    assert by_task == {}  # nothing streamed: no record of them at all


def test_a_failed_task_carries_its_last_stderr_lines(run: Runner) -> None:
    run.sh("bad", "for i in $(seq 1 30); do echo line $i >&2; done; echo done; exit 3")
    run.sh("good", "echo fine >&2")
    run.sh("slow", "echo about to hang >&2; exec sleep 30", walltime=0.3)
    run.wait("bad", "good", "slow")
    bad = run.exits["bad"]
    assert bad.exit_code == 3
    assert bad.stderr_tail == "\n".join(f"line {i}" for i in range(31 - TAIL_LINES, 31))
    assert run.exits["good"].stderr_tail is None  # succeeded: nothing to explain
    slow = run.exits["slow"]
    assert "wall time" in (slow.reason or "") and slow.stderr_tail == "about to hang"


def test_output_larger_than_a_pipe_never_blocks_the_task(run: Runner, tmp_path: Path) -> None:
    size = 3_000_000
    run.launch("big", ["/bin/bash", "-c", f"head -c {size} /dev/zero | tr '\\0' x; head -c 100000 /dev/zero >&2"])
    run.wait("big", timeout=60)
    assert run.exits["big"].ok
    run.streams.flush()
    assert output_of(tmp_path / "output", "big") == [b"x" * size]
    assert output_of(tmp_path / "output", "big", "e") == [b"\0" * 100000]


def test_output_of_a_running_task_reaches_the_file_in_the_loop_pass_that_read_it(tmp_path: Path) -> None:
    r = Runner(tmp_path, tmp_path / "output")
    try:
        r.sh("long", "echo started; exec sleep 30")

        def visible() -> bool:  # an owner's loop: sleep on the launcher's descriptor until its deadline
            dl = r.launcher.next_deadline()
            timeout = 1.0 if dl is None else max(0.0, dl - time.time())
            select.select([r.launcher.fileno()], [], [], timeout)
            r.poll()
            return output_of(tmp_path / "output", "long") == [b"started\n"]

        wait_for(visible, 10, "the running task's output in the file")
        assert "long" not in r.exits
        r.launcher.kill("long", "test over")
        r.wait("long")
    finally:
        r.close()


def test_no_descriptor_is_left_open(run: Runner) -> None:
    run.sh("first", "true")  # the launcher's guard starts with its first task and keeps one pipe end
    run.wait("first")
    before = open_fds()
    for i in range(30):
        run.sh(f"t{i}", "echo x; echo y >&2")
    for i in range(10):
        run.launch(f"missing{i}", ["/no/such/program"])
    run.wait(*(f"t{i}" for i in range(30)), *(f"missing{i}" for i in range(10)))
    assert all(run.exits[f"missing{i}"].exit_code == 127 for i in range(10))
    assert open_fds() == before


def test_a_task_that_leaves_a_process_holding_its_pipe_is_not_waited_for(run: Runner) -> None:
    # the leftover escapes the task's process group, so only closing our read end frees the pipe
    run.sh("leaver", "setsid sleep 30 & echo bye")
    run.wait("leaver")
    assert run.exits["leaver"].ok


def test_a_record_cut_short_at_the_end_is_skipped_and_said(tmp_path: Path) -> None:
    r = Runner(tmp_path, tmp_path / "output")
    try:
        for i in range(3):
            r.sh(f"k:{i}", f"echo out {i}")
        r.wait("k:0", "k:1", "k:2")
    finally:
        r.close()
    path = tmp_path / "output" / "t.out"
    data = path.read_bytes()
    path.write_bytes(data[:-4])  # a kill in the middle of the last write
    attempts, cut = scan(str(path), lambda t: True)
    assert cut
    got = {a.task_id: a.text() for a in attempts}
    assert len(got) == 3 and sum(1 for v in got.values() if v == b"") == 1  # the last chunk is lost, not misread
    _, notes = read_output(str(tmp_path / "output"), lambda t: True)
    assert notes and "cut short" in notes[0]


def test_a_task_that_ran_twice_shows_both_attempts_oldest_first(tmp_path: Path) -> None:
    for n, tag in enumerate(("first", "second")):  # e.g. the run before and after a resume
        r = Runner(tmp_path, tmp_path / "output", tag=tag)
        try:
            r.sh("again:7", f"echo attempt {n}")
            r.wait("again:7")
        finally:
            r.close()
    assert output_of(tmp_path / "output", "again:7") == [b"attempt 0\n", b"attempt 1\n"]


def test_not_an_output_file_is_refused_by_the_reader(tmp_path: Path) -> None:
    out = tmp_path / "output"
    out.mkdir()
    (out / "junk.out").write_text("hello\n")
    by_task, notes = read_output(str(out), lambda t: True)
    assert by_task == {} and "not an hpilot output file" in notes[0]


@pytest.mark.parametrize("data, want", [
    (b"", None),
    (b"\n\n  \n", None),
    (b"one\r\ntwo\r\n", "one\ntwo"),
    (b"\xff\xfe bad utf-8\n", "\ufffd\ufffd bad utf-8"),
    (b"ValueError: x\nsrun: error: n3: task 0: Exited with exit code 4\n", "ValueError: x"),  # srun's own report
    (b"srun: error: n3: task 0: something else\n", "srun: error: n3: task 0: something else"),
    (b"".join(b"l%d\n" % i for i in range(100)), "\n".join(f"l{i}" for i in range(100 - TAIL_LINES, 100))),
])
def test_tail_text(data: bytes, want: Optional[str]) -> None:
    assert tail_text(data) == want


def test_tail_text_is_bounded_in_characters() -> None:
    out = tail_text(b"x" * 10_000, chars=100)
    assert out == "x" * 100
