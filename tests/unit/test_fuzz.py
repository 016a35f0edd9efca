"""Fuzzing of the job parser and the governor core with hypothesis.

Neither may ever raise on user input: the parser answers with a job or with
FieldErrors, the core with a Reply whose response has an int "code".
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pytest
from hpilot.governor.core.governor import (
    ClientRequest,
    FromPart,
    GovernorCore,
    JobDone,
    Reply,
    SendToPartition,
)
from hpilot.governor.core.jobspec import FieldError, JobSpec, parse_job
from hpilot.governor.core.registry import JobRecord
from hpilot.governor.core.states import JobState
from hpilot.partition.messages import (
    CancelJob,
    IterationFinished,
    IterationsDropped,
    IterationStarted,
    Work,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.cores import make_core

FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Field names of the submit format, so that random objects often hit real fields.
KEYS = (
    "name", "execution", "resources", "iteration", "dependencies", "attributes", "wt",
    "exec", "args", "script", "env", "wd", "stdin", "stdout", "stderr", "modules", "venv", "model",
    "model_opts", "numCores", "numNodes", "nodeCrs", "exact", "min", "max", "scheduler", "start", "stop",
    "values", "after", "gpu", "mem", "name", "params", "parts", "mpirun", "mpirun_args", "request", "jobs",
    "jobNames", "command", "withChilds",
)
SAMPLES = st.sampled_from(["/bin/true", "true", "a", "b", "a:0", "b:1", "${it}", "${ it }", "${itt}", "${rcnt}",
                     "1h", "90s", "01:00:00", "split-into", "maximum-iters", "openmpi", "threads", "gpu",
                     "submit", "finishAfterAllTasksDone", "", "a\x00b"])
# Submit validation creates the working directories it is given (as whoever runs
# the tests): the core only gets strings without '/', which stay inside root_wd.
ANY_STRINGS = st.one_of(st.text(max_size=12), SAMPLES)
CORE_STRINGS = st.one_of(st.text(alphabet=st.characters(blacklist_characters="/"), max_size=12), SAMPLES)


def json_values(ints: st.SearchStrategy[int], strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=True, allow_infinity=True), strings)
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=5),
        ),
        max_leaves=20,
    )


ANY_JSON = json_values(st.integers(), ANY_STRINGS)
# The core allocates one byte per iteration: keep numbers small there, so that a
# random "stop" cannot ask for gigabytes (that case has its own test elsewhere).
SMALL_JSON = json_values(st.integers(min_value=-3, max_value=50), CORE_STRINGS)

VALID_JOB: Dict[str, Any] = {
    "name": "a",
    "execution": {"exec": "/bin/true", "args": ["${it}", "x"], "env": {"A": "${rcnt}"}, "stdout": "o.${it}",
                  "model": "default"},
    "resources": {"numCores": {"min": 1, "max": 2}, "wt": "10m"},
    "iteration": {"start": 0, "stop": 3},
    "dependencies": {"after": []},
}
PATHS: List[Tuple[str, ...]] = [
    ("name",), ("execution",), ("execution", "exec"), ("execution", "args"), ("execution", "script"),
    ("execution", "env"), ("execution", "env", "A"), ("execution", "wd"), ("execution", "stdout"),
    ("execution", "model"), ("execution", "modules"), ("execution", "model_opts"), ("resources",),
    ("resources", "numCores"), ("resources", "numCores", "min"), ("resources", "numCores", "max"),
    ("resources", "numCores", "exact"), ("resources", "numCores", "scheduler"), ("resources", "numNodes"),
    ("resources", "nodeCrs"), ("resources", "wt"), ("iteration",), ("iteration", "start"),
    ("iteration", "stop"), ("iteration", "values"), ("dependencies",), ("dependencies", "after"), ("wt",),
    ("attributes",), ("bogus",), ("execution", "bogus"),
]


@st.composite
def mutated_jobs(draw: st.DrawFn, values: st.SearchStrategy[Any], names: Sequence[str] = ("a",)) -> Any:
    """The valid job with a few fields replaced by random values or deleted."""
    job = copy.deepcopy(VALID_JOB)
    job["name"] = draw(st.sampled_from(list(names)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = job
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(values)
    return job


def check_parse_result(raw: Any) -> Tuple[Optional[JobSpec], List[FieldError]]:
    spec, errors = parse_job(raw, 0)
    assert (spec is None) == bool(errors), "either a job or errors, never both nor neither"
    for e in errors:
        assert isinstance(e, FieldError)
        assert isinstance(e.job, str) and e.job
        assert isinstance(e.field, str)
        assert isinstance(e.message, str) and e.message
        assert str(e)
    if spec is not None:
        assert spec.name == raw["name"]
        assert spec.iterations >= 1
    return spec, errors


# ---- (1) the parser ----


@FUZZ
@given(ANY_JSON)
def test_parse_job_on_any_json_never_raises(raw: Any) -> None:
    check_parse_result(raw)


@FUZZ
@given(mutated_jobs(ANY_JSON))
def test_parse_job_on_mutated_valid_job_never_raises(raw: Any) -> None:
    check_parse_result(raw)


def test_unmutated_valid_job_parses() -> None:
    spec, errors = check_parse_result(copy.deepcopy(VALID_JOB))
    assert errors == [] and spec is not None and spec.iterations == 3


# ---- (2) the core, one request at a time ----


@pytest.fixture(scope="module")
def root_wd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-root")


def new_core(root: Path) -> GovernorCore:
    return make_core(root, nodes="n1:4")


NAMES = ("a", "b", "c", "d")
PLAUSIBLE_JOB = st.one_of(
    mutated_jobs(SMALL_JSON, NAMES),
    mutated_jobs(st.sampled_from([*NAMES, "a:1", "b:0", "c:2", ["a"], ["b"], ["a", "c:1"], ["d"]]), NAMES),
    SMALL_JSON,
)
PAYLOADS = st.one_of(
    SMALL_JSON,
    st.fixed_dictionaries({"request": st.just("submit"), "jobs": st.lists(PLAUSIBLE_JOB, max_size=4)}),
    st.fixed_dictionaries(
        {"request": st.sampled_from(["submit", "cancelJob", "removeJob", "listJobs", "jobStatus", "jobInfo",
                                     "resourcesInfo", "status", "control", "finish", "bogus"])},
        optional={"jobs": SMALL_JSON, "jobNames": st.one_of(SMALL_JSON, st.lists(st.sampled_from(NAMES))),
                  "command": SMALL_JSON, "params": SMALL_JSON, "withChilds": SMALL_JSON},
    ),
)


def request(core: GovernorCore, payload: Any, now: float = 1000.0) -> Tuple[Dict[str, Any], list]:
    actions = core.handle(ClientRequest(payload, now, reply_to="fuzz"))
    assert actions and isinstance(actions[0], Reply) and actions[0].reply_to == "fuzz"
    resp = actions[0].response
    assert isinstance(resp, dict)
    assert isinstance(resp.get("code"), int) and not isinstance(resp.get("code"), bool)
    core.validate()
    return resp, actions[1:]


@FUZZ
@given(PAYLOADS)
def test_core_answers_any_request(root_wd: Path, payload: Any) -> None:
    core = new_core(root_wd)
    # something to cancel, remove and ask about
    request(core, {"request": "submit", "jobs": [{"name": "a", "execution": {"exec": "/bin/true"}},
                                                  {"name": "b", "execution": {"exec": "/bin/true"},
                                                   "iteration": {"stop": 3}}]})
    before = len(core.registry)
    resp, actions = request(core, payload)
    if isinstance(payload, dict) and payload.get("request") == "submit" and resp["code"] != 0:
        assert len(core.registry) == before, "a refused submit must not add a job"
        assert not any(isinstance(a, (SendToPartition, JobDone)) for a in actions)
        assert isinstance(resp.get("message"), str) and resp["message"]


@FUZZ
@given(st.lists(PLAUSIBLE_JOB, min_size=1, max_size=5))
def test_core_submit_is_all_or_nothing(root_wd: Path, jobs: List[Any]) -> None:
    core = new_core(root_wd)
    request(core, {"request": "submit", "jobs": [{"name": "d", "execution": {"exec": "/bin/true"}}]})
    errors = [e for i, j in enumerate(jobs) for e in parse_job(j, i)[1]]
    resp, actions = request(core, {"request": "submit", "jobs": jobs})
    if errors:
        assert resp["code"] != 0, "a job that does not parse must refuse the whole submit"
    if resp["code"] != 0:
        assert len(core.registry) == 1
        assert actions == []
        assert resp["data"]["errors"], "a refused submit lists its errors"
        for e in resp["data"]["errors"]:
            assert f"job '{e['job']}'" in resp["message"]
    else:
        assert len(core.registry) == 1 + len(jobs)


# ---- (3) the core over a sequence of requests and partition reports ----

SIMPLE_JOB = st.builds(
    lambda name, after, its: {
        "name": name,
        "execution": {"exec": "/bin/true"},
        **({"dependencies": {"after": after}} if after else {}),
        **({"iteration": {"stop": its}} if its else {}),
    },
    st.sampled_from(NAMES),
    st.lists(st.sampled_from([*NAMES, "a:0", "a:1", "b:0", "c:1"]), max_size=2),
    st.sampled_from([None, 1, 2, 3]),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.lists(SIMPLE_JOB, min_size=1, max_size=3)),
        st.tuples(st.just("cancelJob"), st.lists(st.sampled_from(NAMES), min_size=1, max_size=2)),
        st.tuples(st.just("removeJob"), st.lists(st.sampled_from(NAMES), min_size=1, max_size=2)),
        st.tuples(st.just("run"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("drop"), st.integers(0, 3)),
        st.tuples(st.just("query"), st.sampled_from(["listJobs", "status", "resourcesInfo"])),
    ),
    max_size=14,
)


class FakePartition:
    """Remembers the work it was given and reports on it when told to."""

    def __init__(self) -> None:
        self.pending: Dict[str, List[int]] = {}  # job -> iterations not reported yet
        self.canceled: Set[str] = set()

    def take(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, SendToPartition) and isinstance(a.message, Work):
                name = a.message.spec.job
                assert name not in self.pending, f"{name} dispatched twice"
                self.pending[name] = list(a.message.iterations)
                self.canceled.discard(name)
            elif isinstance(a, SendToPartition) and isinstance(a.message, CancelJob):
                self.canceled.add(a.message.job)

    def pick(self, k: int) -> Optional[str]:
        names = sorted(n for n, its in self.pending.items() if its)
        return names[k % len(names)] if names else None


@FUZZ
@given(STEPS)
def test_core_over_a_sequence_keeps_its_invariants(root_wd: Path, steps: List[Tuple[Any, ...]]) -> None:
    core = new_core(root_wd)
    part = FakePartition()
    finished_records: Set[int] = set()
    now = 1000.0

    def check(actions: list) -> None:
        for a in actions:
            if isinstance(a, JobDone):
                rec: JobRecord = a.job
                assert rec.state.is_final
                assert id(rec) not in finished_records, f"JobDone twice for {rec.name}"
                finished_records.add(id(rec))
            if isinstance(a, SendToPartition) and isinstance(a.message, Work):
                rec2 = core.registry.get(a.message.spec.job)
                assert rec2 is not None
                for dep in rec2.spec.after:
                    drec = core.registry.get(dep.job)
                    assert drec is not None, f"{rec2.name} dispatched after its dependency {dep} vanished"
                    state = drec.state if dep.iteration is None else drec.it_state(dep.iteration)
                    assert state is JobState.SUCCEED, f"{rec2.name} dispatched while {dep} is {state.value}"
        part.take(actions)

    for step in steps:
        now += 1.0
        kind = step[0]
        if kind == "submit":
            _, actions = request(core, {"request": "submit", "jobs": step[1]}, now)
        elif kind in ("cancelJob", "removeJob"):
            _, actions = request(core, {"request": kind, "jobNames": step[1]}, now)
        elif kind == "query":
            _, actions = request(core, {"request": step[1]}, now)
        elif kind == "run":
            name = part.pick(step[1])
            if name is None:
                continue
            it = part.pending[name].pop(0)
            canceled = name in part.canceled
            actions = core.handle(FromPart("p0", IterationStarted(name, it, "n1[0]", "/wd", now, now)))
            core.validate()
            actions += core.handle(FromPart("p0", IterationFinished(
                name, it, 143 if canceled else (0 if step[2] else 1), now, now + 0.5, "n1[0]", "/wd",
                reason="canceled" if canceled else None, canceled=canceled)))
        else:
            name = part.pick(step[1])
            if name is None:
                continue
            its, part.pending[name] = part.pending[name], []
            actions = core.handle(FromPart("p0", IterationsDropped(name, tuple(its), "dropped", now,
                                                                   canceled=name in part.canceled)))
        core.validate()
        check(actions)
        for name in [n for n, its in part.pending.items() if not its]:
            rec3 = core.registry.get(name)
            if rec3 is None or rec3.state.is_final:
                del part.pending[name]
    # every job that got all its reports is final
    for rec4 in core.registry:
        if rec4.dispatched and rec4.name not in part.pending:
            assert rec4.state.is_final, f"{rec4.name} got every report but is {rec4.state.value}"
