"""QCG-PilotJob 0.14.2's own client library against a real hpilot service, single and governor mode.

The scenarios (``tests/qcgcompat/scenarios.py``) drive ``qcg.pilotjob.api.manager.Manager``
and ``qcg.pilotjob.api.job.Jobs`` through every call of QCG-PilotJob's API: submit, list,
status, info, info_parsed, wait4, wait4all, wait4_any_job_finish, cancel, remove,
resources, system_status and finish, plus iterations by name (``job:it``), ``${it}`` /
``${itval}`` / ``${jname}`` / ``${uniq}`` / ``${rcnt}`` and ``"after": ["a:${it}"]``.
What they observe is compared with what the same scenarios observed of QCG-PilotJob's
own service (``tests/qcgcompat/qcg-0.14.2.json``, recorded by ``tests/qcgcompat/record.py``):
every key QCG-PilotJob answers must be there with the same type, every value the same,
except the few deliberate differences in :data:`DIFFERENT` (each with its reason).
hpilot may answer more keys than QCG-PilotJob; it never drops or renames one.

QCG-PilotJob's client is woken by events only in wait4_any_job_finish and wait4all (and
waits 5 minutes per missed event in wait4), so these scenarios also show that hpilot's
publisher speaks QCG-PilotJob's format and topics.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest

from tests.conftest import HPILOT, run_hpilot, wait_for, write_requests
from tests.integration.test_net import BANNER, Service, ask, clean_env, stop, stop_service

qcg_manager = pytest.importorskip("qcg.pilotjob.api.manager", reason="qcg-pilotjob==0.14.2 (the test extra)")

from tests.qcgcompat import scenarios  # noqa: E402 - needs qcg.pilotjob

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[1] / "qcgcompat" / "qcg-0.14.2.json"
QCG: Dict[str, Any] = json.loads(FIXTURE.read_text())

# mode -> (--nodes, other flags): the same 4 cores, in one process or in two partition managers
MODES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "single": ("4", ()),
    "governor": ("2,2", ("--governor", "--partition-nodes", "1")),
}

# Keys QCG-PilotJob's own API documents as optional, which hpilot gives only where they
# mean something: inQueue for a job that is queued (QCG-PilotJob keeps a stale one).
OPTIONAL = {"inQueue"}


def _starts(prefix: str) -> Callable[[Any], bool]:
    return lambda got: isinstance(got, str) and got.startswith(prefix)


# path -> (what hpilot answers instead, why)
DIFFERENT: Dict[str, Tuple[Any, str]] = {
    **{f"iteration_dependencies.wait4.{j}": ("FAILED", "wait4 of an iterative job gives the job's state; "
                                             "QCG-PilotJob gives the state of its last iteration (its JFI "
                                             "event carries that), SUCCEED for a job that FAILED")
       for j in ("d-c", "d-d", "d-e")},
    "cancel_iterations.wait4.c-it": ("FAILED", "as above: a job with canceled iterations is FAILED"),
    "cancel_iterations.wait4_whole.c-after": ("FAILED", "as above: its iterations were OMITTED one by one"),
    "errors.info_unknown.message": (_starts("Request failed - Job 'e-nope' doesn't exist"),
                                    "QCG-PilotJob prints the list of names asked for, hpilot the unknown one"),
    "errors.submit_duplicate.message": (_starts("Request failed - submit refused"),
                                        "hpilot lists every problem of the submit, with the job and field"),
}
GOVERNOR_RESOURCES = {"free_cores": 4, "total_cores": 4, "total_nodes": 2, "used_cores": 0}


def check(expected: Any, got: Any, path: str, different: Dict[str, Tuple[Any, str]]) -> None:
    if path in different:
        expected = different[path][0]
    if callable(expected):
        assert expected(got), f"{path}: hpilot answers {got!r}"
    elif path.endswith("data_keys"):  # hpilot may add keys
        assert set(expected) <= set(got), f"{path}: QCG {expected!r}, hpilot {got!r}"
    elif isinstance(expected, dict):
        assert isinstance(got, dict), f"{path}: QCG-PilotJob answers an object, hpilot {got!r}"
        for key, value in expected.items():
            if key in OPTIONAL:
                continue
            assert key in got, f"{path}: hpilot's answer lacks {key!r} (it has {sorted(got)})"
            check(value, got[key], f"{path}.{key}", different)
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{path}: QCG {expected!r}, hpilot {got!r}"
        for i, (e, g) in enumerate(zip(expected, got)):
            check(e, g, f"{path}[{i}]", different)
    elif path.endswith("message_start"):  # hpilot says more, after QCG-PilotJob's start
        assert isinstance(got, str) and got.startswith(expected), f"{path}: QCG {expected!r}, hpilot {got!r}"
    else:
        assert got == expected, f"{path}: QCG-PilotJob {expected!r}, hpilot {got!r}"


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(wd: Path, nodes: str, flags: Tuple[str, ...]) -> Service:
    """``hpilot service --net``; its banner line names the address (a governor prints another line first)."""
    out, err = wd.parent / "service.out", wd.parent / "service.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(HPILOT + ["service", "--net", "--nodes", nodes, "--wd", str(wd), *flags], cwd=wd,
                                stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, env=clean_env())
    try:
        wait_for(lambda: any(map(BANNER.match, out.read_text().splitlines())) or proc.poll() is not None, 30,
                 "the service's banner")
        found = [m for m in map(BANNER.match, out.read_text().splitlines()) if m]
        assert found, f"no banner; exit {proc.poll()}; stderr {err.read_text()}"
    except BaseException:
        stop(proc)
        raise
    m = found[0]
    svc = Service(proc, m.group(1), m.group(2), Path(m.group(3)), wd, out, err)
    # a governor's partition managers register a moment after it listens: begin with all 4 cores
    wait_for(lambda: ask(svc.connect, {"request": "resourcesInfo"})["data"]["total_cores"] == 4, 30,
             "the partitions to register")
    return svc


@pytest.fixture
def hpilot(mode: str, wd: Path) -> Iterator[Service]:
    nodes, flags = MODES[mode]
    svc = start(wd, nodes, flags)
    try:
        yield svc
    finally:
        stop_service(svc)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("scenario", list(scenarios.SCENARIOS))
def test_qcg_client_sees_what_qcg_service_gives(scenario: str, mode: str, hpilot: Service) -> None:
    got = scenarios.run_all(hpilot.connect, str(hpilot.wd), [scenario])
    different = dict(DIFFERENT)
    if mode == "governor":
        different["basics.resources"] = (GOVERNOR_RESOURCES, "two partitions of one node each")
    assert got["publisher"] is True, "QCG-PilotJob's client found no event publisher"
    check(QCG[scenario], got[scenario], scenario, different)
    check(QCG["finish"], got["finish"], "finish", different)
    assert hpilot.proc.wait(30) in (0, 1)  # finished cleanly (1: some job of the scenario did not succeed)


def test_fixture_was_recorded_from_qcg_pilotjob() -> None:
    """The oracle is QCG-PilotJob's real service, not hpilot (see tests/qcgcompat/record.py)."""
    assert QCG["recorded_with"]["qcg-pilotjob"] == "0.14.2"
    assert set(scenarios.SCENARIOS) <= set(QCG)
    # QCG-PilotJob's own quirks are in the recording, which is how DIFFERENT is known to be needed
    assert QCG["iteration_dependencies"]["wait4"]["d-c"] == "SUCCEED"
    assert QCG["iteration_dependencies"]["d-c-childs"] == ["SUCCEED", "FAILED", "SUCCEED"]



@pytest.mark.timeout(120)
def test_qcg_local_manager_starts_hpilot(wd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QCG-PilotJob's own LocalManager, pointed at hpilot by hpilot.governor.api.qcglocal."""
    import qcg.pilotjob.service as qcg_service
    from hpilot.governor.api.qcglocal import HpilotServiceProcess, use_hpilot
    from qcg.pilotjob.api.job import Jobs

    monkeypatch.setattr(qcg_service, "QCGPMServiceProcess", qcg_service.QCGPMServiceProcess)  # undone after
    use_hpilot()
    assert qcg_service.QCGPMServiceProcess is HpilotServiceProcess
    monkeypatch.chdir(wd)
    m = qcg_manager.LocalManager(["--wd", str(wd), "--nodes", "3"], {"wdir": str(wd)})
    try:
        assert m.resources() == {"total_nodes": 1, "total_cores": 3, "used_cores": 0, "free_cores": 3}
        ids = m.submit(Jobs().add(name="date", exec="/bin/date", stdout="date.out")
                       .add(name="it", iteration={"values": ["p", "q"]}, script="echo ${itval} > it.${it}.out"))
        assert m.wait4(ids) == {"date": "SUCCEED", "it": "SUCCEED"}
        assert m.system_status()["System"]["StatusPublisher"]
    finally:
        m.finish()
    assert not m.qcgpm_process.is_alive()
    assert (wd / "date.out").exists() and (wd / "it.1.out").read_text().strip() == "q"


def test_request_file_gives_qcg_files(wd: Path) -> None:
    """The same jobs as the variables and iteration_dependencies scenarios, from a request file
    (``hpilot run``): the files they write are the ones QCG-PilotJob's service wrote."""
    jobs = [
        {"name": "v-vals", "iteration": {"values": ["x", "y", "z"]},
         "execution": {"script": "echo ${it} ${itval} ${jname} > v-vals.${it}.out"}},
        {"name": "v-range", "iteration": {"start": 2, "stop": 4},
         "execution": {"script": "echo ${it} ${itval} ${jname} > v-range.${it}.out"}},
        {"name": "d-a", "iteration": {"stop": 3}, "execution": {"script": "sleep 0.${it}; echo ${it} > d-a.${it}.out"}},
        {"name": "d-b", "iteration": {"stop": 3}, "dependencies": {"after": ["d-a:${it}"]},
         "execution": {"script": "cat d-a.${it}.out > d-b.${it}.out"}},
    ]
    write_requests(wd / "jobs.json", [{"request": "submit", "jobs": jobs}])
    proc = run_hpilot(["run", "jobs.json", "--nodes", "4"], wd)
    assert proc.returncode == 0, proc.stderr
    for name, words in QCG["variables"].items():
        if name.endswith(".out"):
            assert (wd / name).read_text().split() == words, name
    assert sorted((wd / f"d-b.{i}.out").read_text().strip() for i in range(3)) == QCG["iteration_dependencies"][
        "d-b-files"]
