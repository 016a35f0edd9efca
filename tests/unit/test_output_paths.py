"""Output paths checked at submit (governor/core/validate.py, with this machine's answers from
governor/service/host.py), like ``wd``: a directory, a
missing directory or a place that cannot be written is refused with the job, the field and
the path; only the literal part of a path with variables is checked, and a missing directory
is left to a job with dependencies (an earlier job may make it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hpilot.governor.core.jobspec import parse_job
from hpilot.governor.core.validate import check_submit
from hpilot.governor.service.host import SystemHost


def refusals(root: Path, *jobs: Dict[str, Any]) -> List[Tuple[str, str, str]]:
    specs = []
    for i, raw in enumerate(jobs):
        spec, errors = parse_job(raw, i)
        assert spec is not None and not errors, errors
        specs.append(spec)
    known: Dict[str, Optional[range]] = {"earlier": None}
    errors = check_submit(specs, lambda name: (range(1) if name in known else None), str(root), None,
                          ("default",), SystemHost())
    return [(e.job, e.field, e.message) for e in errors]


def job(name: str, **execution: Any) -> Dict[str, Any]:
    extra = {k: execution.pop(k) for k in ("iteration", "dependencies") if k in execution}
    return {"name": name, "execution": {"exec": "/bin/true", **execution}, **extra}


def test_good_paths_pass_and_nothing_is_left_behind(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert refusals(tmp_path, job("a", stdout="a.txt", stderr="out/a.err"),
                    job("b", stdout="out/${it}.txt", iteration={"stop": 3}),
                    job("c", stdout="${it}/x", iteration={"stop": 2}),  # the directory differs per iteration
                    job("d", wd="sub", stdout="d.out")) == []  # the job's wd is made at submit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "sub"]  # no probe file, no output yet


def test_bad_paths_are_refused_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    got = refusals(tmp_path, job("a", stdout="adir"), job("b", stderr="nodir/e.${it}", iteration={"stop": 2}),
                   job("c", stdout="afile/out"), job("d", stderr="/proc/self/x.err"))
    assert [(j, f) for j, f, _ in got] == [("a", "execution.stdout"), ("b", "execution.stderr"),
                                           ("c", "execution.stdout"), ("d", "execution.stderr")]
    messages = [m for _, _, m in got]
    assert messages[0] == f"{tmp_path / 'adir'} is a directory"
    assert messages[1] == f"no such directory: {tmp_path / 'nodir'}"
    assert messages[2] == f"{tmp_path / 'afile'} is not a directory"
    assert messages[3].startswith("cannot write in /proc/self")


def test_a_job_with_dependencies_may_write_where_an_earlier_job_makes_the_directory(tmp_path: Path) -> None:
    later = job("b", stdout="made-by-a/b.out", dependencies={"after": ["earlier"]})
    assert refusals(tmp_path, later) == []
    assert refusals(tmp_path, job("c", stdout="made-by-a/c.out"))[0][1] == "execution.stdout"
