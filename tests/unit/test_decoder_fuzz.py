"""Every decoder of a frame from the wire is total: a value, or its one error type, never a crash.

Per decoder (hypothesis): arbitrary bytes, arbitrary JSON, and valid messages with one
field replaced or deleted; plus the concrete frames that used to kill a service (JSON
nested 1,000 deep, a 5,000-digit integer).  The decoders: the limits every frame passes
(``launcher.safejson``), the governor <-> partition codec (``partition.wire``), the
service <-> agent codec (``launcher.wire``), the events a client reads
(``governor.api.manager.parse_event``) and the wrapper's records (``launcher.rtstats``).
That the services themselves answer after such frames, on real sockets, is in
``tests/integration/test_hostile_frames.py``.
"""

from __future__ import annotations

import copy
import json
from typing import Any, List, Tuple

import pytest
from hpilot.governor.api.manager import parse_event
from hpilot.governor.core.jobspec import parse_job
from hpilot.launcher import safejson
from hpilot.launcher import wire as agent_wire
from hpilot.launcher.rtstats import wrapper_record
from hpilot.partition import batchwire
from hpilot.partition import wire as part_wire
from hpilot.partition.messages import (
    CancelJob,
    IterationFinished,
    IterationsDropped,
    IterationsRan,
    IterationsStarted,
    IterationsSucceeded,
    IterationStarted,
    Shutdown,
    TaskSpec,
    Work,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NESTED_1000 = b"[" * 1000 + b"]" * 1000  # about 2 KB
NESTED_OBJECTS = b'{"a":' * 1000 + b"1" + b"}" * 1000
BIG_INT = b'{"request": "submit", "jobs": ' + b"9" * 5000 + b"}"
KILLERS = [NESTED_1000, NESTED_OBJECTS, BIG_INT, b"9" * 5000, b"-" + b"1" * 5000, b"1e" + b"9" * 5000,
           b'[NaN]', b'{"a": Infinity}', b"\xff\xfe\x00", b"", b" ", b'"\\ud800"', b"[" * 100_000,
           b'{"a": "' + b"[" * 5000 + b'"}' + b"]" * 3]

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=4),
                                                 st.dictionaries(st.text(max_size=8), c, max_size=4)),
                    max_leaves=25)
FRAMES = st.one_of(st.binary(max_size=300), JSON.map(lambda v: json.dumps(v).encode()),
                   st.sampled_from(KILLERS))


# ---- the limits every frame passes first ----


@pytest.mark.parametrize("frame", KILLERS)
def test_the_frames_that_killed_a_service_are_refused_with_a_reason(frame: bytes) -> None:
    with pytest.raises(safejson.DecodeError) as e:
        safejson.loads(frame)
    assert str(e.value)


def test_limits_name_what_is_wrong() -> None:
    with pytest.raises(safejson.DecodeError, match="nested more than 64 deep"):
        safejson.loads(NESTED_1000)
    with pytest.raises(safejson.DecodeError, match="more than 100 digits"):
        safejson.loads(BIG_INT)
    with pytest.raises(safejson.DecodeError, match="bytes, more than"):
        safejson.loads(b"[1, 2]", safejson.Limits(max_bytes=3))
    with pytest.raises(safejson.DecodeError, match="NaN"):
        safejson.loads(b"[NaN]")


@pytest.mark.parametrize("text", [
    '{"a": "[[[[[[[[[["}', '["]]]]]]", "[[[["]', '{"s": "' + "9" * 5000 + '"}', '{"k\\"[": "\\\\[", "x": [1]}',
    '  [1, 2.5, -3e10, true, null, "\u00e9\u4e2d"]  ', '{"deep": ' + "[" * 64 + "]" * 64 + "}",
])
def test_brackets_and_digits_inside_strings_are_text(text: str) -> None:
    """The checks see structure, not text: only a real nesting or number is limited."""
    assert safejson.loads(text.encode(), safejson.Limits(max_depth=65)) == json.loads(text)


def test_depth_is_counted_exactly() -> None:
    ok = b"[" * 10 + b"]" * 10
    assert safejson.loads(ok, safejson.Limits(max_depth=10)) is not None
    with pytest.raises(safejson.DecodeError):
        safejson.loads(ok, safejson.Limits(max_depth=9))
    # strings that hide brackets cannot hide depth
    sneaky = b'[[[[ "]]]]", [[[[ ]]]], "[[[[" ]]]]'
    assert safejson.loads(sneaky, safejson.Limits(max_depth=8)) is not None  # really 8 deep
    with pytest.raises(safejson.DecodeError):
        safejson.loads(sneaky, safejson.Limits(max_depth=7))


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@FUZZ
@given(JSON, st.integers(0, 6))
def test_the_depth_limit_is_exact_with_few_brackets_or_many(value: Any, limit: int) -> None:
    """A frame with no more brackets than the limit is passed without the depth walk (it cannot
    nest deeper); any other is walked.  Either way: accepted exactly when no deeper than the limit."""
    frame = json.dumps(value).encode()
    if _depth(value) <= limit:
        assert safejson.loads(frame, safejson.Limits(max_depth=limit)) == value
    else:
        with pytest.raises(safejson.DecodeError):
            safejson.loads(frame, safejson.Limits(max_depth=limit))


@pytest.mark.parametrize("frame", [b"[[1]", b"[1]]", b"{[}]", b"[}", b'{"a": [1}'])
def test_unbalanced_brackets_are_refused_below_the_limit_too(frame: bytes) -> None:
    with pytest.raises(safejson.DecodeError):
        safejson.loads(frame)


@FUZZ
@given(FRAMES)
def test_safejson_is_total(frame: bytes) -> None:
    try:
        value = safejson.loads(frame, safejson.Limits(max_depth=8, max_digits=30))
    except safejson.DecodeError:
        return
    assert value == json.loads(frame)  # what it accepts, it reads as Python does


@FUZZ
@given(JSON)
def test_safejson_reads_what_python_writes(value: Any) -> None:
    assert safejson.loads(json.dumps(value).encode(), safejson.Limits(max_digits=400)) == value


# ---- governor <-> partition ----


def _spec() -> TaskSpec:
    raw = {"name": "j", "iteration": {"start": 0, "stop": 5},
           "execution": {"exec": "/bin/echo", "args": ["${it}", "x"], "env": {"A": "${jname}"}, "stdout": "o.${it}"},
           "resources": {"numCores": {"min": 1, "scheduler": {"name": "split-into", "params": {"parts": 2}}},
                         "wt": "10s"}}
    spec, errs = parse_job(raw, 0)
    assert spec is not None and not errs
    it = spec.iteration
    assert it is not None
    return TaskSpec(spec.name, spec.execution, spec.resources, True, it.start, it.count, it.values)


PART_MESSAGES: List[Any] = [
    Work(_spec(), range(0, 5), 1.5), Work(_spec(), (1, 3), 1.5), CancelJob("j", "why", 2.0), Shutdown("bye", 3.0),
    IterationStarted("j", 3, "n1[0,1]", "/wd", 1.0, 2.0, 2, 123),
    IterationFinished("j", 3, -9, 1.0, 2.0, "n1[0]", "/wd", 1, "killed", True),
    IterationsDropped("j", range(2, 9), "canceled", 4.0, True),
    part_wire.Registered("p1", 1.0), part_wire.Refused("no"), part_wire.Heartbeat(1.0), part_wire.Bye("x"),
    part_wire.Leaving("drain"), part_wire.ClientQuery(3, '{"request": "listJobs"}'),
    part_wire.ClientAnswer(3, '{"code": 0}'), part_wire.register("p", "h", 1, (("n1", 4),), ()),
]


def _paths(v: Any, here: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    """Every place in a JSON value: dict keys and list indices from the top."""
    out = [here]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, here + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, here + (i,))
    return out


@st.composite
def mutated(draw: st.DrawFn, generic: Any) -> bytes:
    """A valid message's JSON with one place replaced by any JSON value, or deleted."""
    value = copy.deepcopy(generic)
    path = draw(st.sampled_from([p for p in _paths(value) if p]))
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(st.one_of(JSON, st.sampled_from([{"r": [0, 10**30]}, {"(": [1.5]}, {"@": "Bye"},
                                                                 2**63, -1, 1e308 * 10, True, "", [], {}])))
    return json.dumps(value).encode()


PART_GENERIC = [json.loads(part_wire.encode(m)) for m in PART_MESSAGES]
BATCH = batchwire.encode_batch([PART_MESSAGES[4], PART_MESSAGES[5], PART_MESSAGES[6]])


def _check_part(frame: bytes) -> None:
    try:
        msgs, errors = batchwire.decode_frame(frame)
    except part_wire.WireError:
        return
    for m in msgs:
        assert type(m) in part_wire.TOP
        for name, hint, _ in part_wire._checks(type(m)):
            assert part_wire._conforms(getattr(m, name), hint), (m, name)
        assert part_wire.decode(part_wire.encode(m)) == m  # what it accepts is a message it can send again
    assert all(isinstance(e, str) and e for e in errors)


def test_every_partition_message_round_trips() -> None:
    for m in PART_MESSAGES:
        assert part_wire.decode(part_wire.encode(m)) == m
    assert batchwire.decode_frame(BATCH) == ([PART_MESSAGES[4], PART_MESSAGES[5], PART_MESSAGES[6]], [])


@pytest.mark.parametrize("frame", KILLERS)
def test_partition_codec_refuses_the_killers(frame: bytes) -> None:
    with pytest.raises(part_wire.WireError):
        batchwire.decode_frame(frame)


@FUZZ
@given(FRAMES)
def test_partition_codec_is_total_on_any_frame(frame: bytes) -> None:
    _check_part(frame)


@FUZZ
@given(st.sampled_from(PART_GENERIC).flatmap(mutated))
def test_partition_codec_is_total_on_mutated_messages(frame: bytes) -> None:
    _check_part(frame)


@FUZZ
@given(mutated(json.loads(BATCH)))
def test_partition_codec_is_total_on_mutated_batches(frame: bytes) -> None:
    _check_part(frame)


@pytest.mark.parametrize("frame,why", [
    (b'{"@":"Heartbeat","now":1e999}', "Heartbeat.now"),
    (b'{"@":"IterationsDropped","job":"j","iterations":{"r":[0,1e400]},"reason":"r","when":1}', "range"),
    (b'{"@":"Work","spec":"x","iterations":{"r":[0,1]},"now":0}', "Work.spec"),
    (b'{"@":"CancelJob","job":["j"],"reason":"r","now":0}', "CancelJob.job"),
    (b'{"@":"Heartbeat","now":true}', "Heartbeat.now"),
    (b'{"@":"Bye","reason":"r"} ', None),
])
def test_partition_codec_checks_every_field(frame: bytes, why: Any) -> None:
    if why is None:
        assert part_wire.decode(frame) == part_wire.Bye("r")
        return
    with pytest.raises(part_wire.WireError, match=why):
        part_wire.decode(frame)


# ---- service <-> agent ----

AGENT_MESSAGES: List[Any] = [
    agent_wire.Started("t", 5, 1.5), agent_wire.Exited("t", 3, 1.0, 2.0, "why", 9), agent_wire.Welcome(1.0),
    agent_wire.Launch("t", ("a", "b"), {"K": "V"}, "/w", None, "o", None, (1, 2), 3.0),
    agent_wire.Kill("t", "r"), agent_wire.KillNow(), agent_wire.Heartbeat(1.0), agent_wire.Bye("done"),
    agent_wire.hello("n1", 12, (0, 1)),
]
AGENT_GENERIC = [json.loads(agent_wire.encode(m)) for m in AGENT_MESSAGES]


def _check_agent(frame: bytes) -> None:
    try:
        msg = agent_wire.decode(frame)
    except agent_wire.WireError:
        return
    assert agent_wire.decode(agent_wire.encode(msg)) == msg


@pytest.mark.parametrize("frame", KILLERS)
def test_agent_codec_refuses_the_killers(frame: bytes) -> None:
    with pytest.raises(agent_wire.WireError):
        agent_wire.decode(frame)


@FUZZ
@given(FRAMES)
def test_agent_codec_is_total_on_any_frame(frame: bytes) -> None:
    _check_agent(frame)


@FUZZ
@given(st.sampled_from(AGENT_GENERIC).flatmap(mutated))
def test_agent_codec_is_total_on_mutated_messages(frame: bytes) -> None:
    _check_agent(frame)


# ---- what a client reads: events ----


@FUZZ
@given(st.lists(FRAMES, max_size=3))
def test_event_parser_is_total(frames: List[bytes]) -> None:
    ev = parse_event(frames)
    assert ev is None or (isinstance(ev, dict) and isinstance(ev["event"], str))


@FUZZ
@given(mutated({"event": "job", "job": "a", "state": "SUCCEED", "time": 1.5}))
def test_event_parser_on_mutated_events(frame: bytes) -> None:
    ev = parse_event([b"job", frame])
    if ev is not None and ev["event"] == "job":
        assert isinstance(ev["job"], str) and isinstance(ev["state"], str)


# ---- what a launcher reads: the wrapper's records ----

RECORD = {"v": 1, "task": "t", "pid": 5, "start": 1.5, "end": 2.5, "exit": 0, "signal": 9, "error": ""}


@FUZZ
@given(st.one_of(FRAMES, mutated(RECORD)))
def test_wrapper_record_reader_is_total(line: bytes) -> None:
    rec = wrapper_record(line)
    if rec is not None:
        task, sig, error = rec
        assert isinstance(task, str) and type(sig) is int and 0 <= sig < 256 and isinstance(error, str)


def test_wrapper_record_reader_reads_a_real_record() -> None:
    assert wrapper_record(json.dumps(RECORD).encode()) == ("t", 9, "")


# ---- what the command line reads: a "service" that answers garbage ----


@pytest.mark.shell
@pytest.mark.parametrize("frame", KILLERS[:4])
def test_the_command_lines_client_survives_a_killer_answer(frame: bytes) -> None:
    import zmq
    from hpilot.governor.cli.connect import Client, Target
    from hpilot.governor.errors import UserError

    ctx = zmq.Context.instance()
    fake = ctx.socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    client = Client(Target(f"tcp://127.0.0.1:{port}"), timeout=10)
    try:
        with pytest.raises(UserError, match="not JSON"):
            def answer() -> None:
                assert fake.poll(5000)
                ident, *envelope = fake.recv_multipart()
                fake.send_multipart([ident, *envelope[:-1], frame])

            import threading

            t = threading.Thread(target=answer)
            t.start()
            try:
                client.call({"request": "status"})
            finally:
                t.join(10)
    finally:
        client.close()
        fake.close(0)


# ---- what a partition does with a decoded Work: never fail on it ----


@FUZZ
@given(st.sampled_from([g for g, m in zip(PART_GENERIC, PART_MESSAGES) if isinstance(m, Work)]).flatmap(mutated))
def test_a_decoded_work_never_fails_the_partition_core(frame: bytes) -> None:
    """The codec also holds the invariants the core relies on (exec or script, iterations
    inside the job's...): whatever it lets through, the core handles."""
    from hpilot.partition.core import PartitionConfig, PartitionCore, Schedule
    from hpilot.partition.models import EnvContext
    from hpilot.partition.resources import local_resources

    try:
        msg = part_wire.decode(frame)
    except part_wire.WireError:
        return
    core = PartitionCore(local_resources("n1:4"), PartitionConfig("/nonexistent-wd", EnvContext(base_env={})))
    core.handle(msg)
    core.handle(Schedule(1.0))


# a batch whose columns all take their packed forms: a run of iterations, times as bytes,
# one wd for all, allocations as a table and indices, no pids
PACKED_MSGS = [IterationsStarted("s", (4, 5, 6, 7, 8), ("n0[0]", "n0[1]", "n0[0]", "n0[1]", "n0[0]"), ("/w",) * 5,
                                 (1.0, 1.25, 1.5, 1.75, 2.0), (1.5, 1.5, 2.0, 2.0, 2.5), (None,) * 5, 5),
               IterationsSucceeded("s", (9, 3, 1), ("a", "a", "a"), ("/w", "/v", "/w"), (1.0, 2.0, 3.0),
                                   (1.5, 2.5, 3.5), 3),
               IterationsRan("s", (10, 11, 12), ("a", "b", "a"), ("/w",) * 3, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0),
                             (2.0, 2.5, 2.5), (3.0, 3.0, 3.0), (7, 8, 9), 3)]
PACKED = batchwire.encode_batch(PACKED_MSGS)


def test_a_batch_packs_its_columns_and_unpacks_to_the_same_messages() -> None:
    raw = json.loads(PACKED)
    started = raw[0]
    assert started[2] == {"r": [4, 9]} and started[4] == {"x": "/w"} and started[7] == {"x": None}
    assert set(started[3]) == {"k", "i"} and set(started[5]) == {"f"}
    assert batchwire.decode_frame(PACKED) == (PACKED_MSGS, [])


@pytest.mark.parametrize("place, value", [
    ((0, 5), {"f": "not base64!"}),
    ((0, 5), {"f": "AAAAAAAA"}),  # one double for five iterations
    ((0, 5), {"f": "AAAAAAAA+H8AAAAAAADwfwAAAAAAAPh/AAAAAAAA+H8AAAAAAAD4fw=="}),  # NaN and infinity
    ((0, 3), {"k": ["a"], "i": "AAAAAAEAAAAAAAAAAQAAAAAAAAA="}),  # index 1 of a table of one
    ((0, 3), {"k": [1, 2], "i": "AAAAAAEAAAAAAAAAAQAAAAAAAAA="}),  # a table of numbers
    ((0, 3), {"k": ["a"], "i": "AAAA"}),  # too few indices
    ((0, 2), {"r": [0, 10 ** 12]}),  # a range far beyond any batch
    ((0, 2), {"r": [5, 1]}),
    ((0, 4), {"x": 7}),
    ((0, 7), {"x": 0}),
    ((0, 5), {"f": "AAAA", "extra": 1}),
])
def test_a_bad_packed_column_drops_its_batch_with_the_reason(place: Tuple[int, int], value: Any) -> None:
    raw = json.loads(PACKED)
    raw[place[0]][place[1]] = value
    msgs, errors = batchwire.decode_frame(json.dumps(raw).encode())
    assert msgs == PACKED_MSGS[1:] and len(errors) == 1 and "IterationsStarted" in errors[0]


@FUZZ
@given(mutated(json.loads(PACKED)))
def test_partition_codec_is_total_on_mutated_packed_batches(frame: bytes) -> None:
    _check_part(frame)
