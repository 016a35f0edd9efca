"""The governor <-> partition codec: every message round-trips; bad frames are refused."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hpilot.governor.core.jobspec import parse_job
from hpilot.partition import batchwire, wire
from hpilot.partition.messages import (
    CancelJob,
    IterationFinished,
    IterationsDropped,
    IterationStarted,
    Shutdown,
    TaskSpec,
    Work,
)


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


@pytest.mark.parametrize("msg", [
    Work(dataclasses.replace(_spec(), it_count=1_000_000), range(0, 1_000_000), 1.5),
    Work(_spec(), (1, 3, 4), 1.5),
    CancelJob("j", "why", 2.0),
    Shutdown("bye", 3.0),
    IterationStarted("j", 3, "n1[0,1]", "/wd", 1.0, 2.0, 2, 123),
    IterationFinished("j", 3, 0, 1.0, 2.0, "n1[0]", "/wd"),
    IterationFinished("j", 3, -9, 1.0, 2.0, "n1[0]", "/wd", 1, "killed", True),
    IterationsDropped("j", range(2, 9), "canceled", 4.0, True),
    wire.Registered("p1", 1.0), wire.Refused("no"), wire.Heartbeat(1.0), wire.Bye("x"), wire.Leaving("drain"),
    wire.register("p1", "host", 7, (("n1", 4), ("n2", 4)), ("gpu",)),
    wire.ClientQuery(3, '{"request": "jobInfo", "jobNames": ["j"], "params": {"withChilds": true}}'),
    wire.ClientQuery(4, '{"@": "Work", "r": [1, 2], "(": []}'),  # a client's data stays text: never decoded
    wire.ClientAnswer(3, '{"code": 0, "data": {"jobs": {}}}'),
    wire.ClientAnswer(5, "not even JSON: the receiver answers its client with an error"),
])
def test_round_trip(msg: object) -> None:
    frame = wire.encode(msg)  # type: ignore[arg-type]
    assert len(frame) < 4000  # a million iterations are two numbers
    assert wire.decode(frame) == msg


@pytest.mark.parametrize("frame", [b"", b"nope", b"[]", b'{"@": "Evil"}', b'{"@": "Heartbeat"}',
                                   b'{"@": "CancelJob", "job": 1, "reason": "x"}',
                                   b'{"@": "Heartbeat", "now": 1, "extra": 2}',
                                   b'{"@": "IterationsDropped", "job": "j", "iterations": {"r": [1]}, '
                                   b'"reason": "x", "when": 1}',
                                   b'{"@": "TaskSpec", "job": "j"}',
                                   b'{"@": "ClientQuery", "qid": 1, "payload": {"request": "listJobs"}}',
                                   b'{"@": "ClientQuery", "qid": "1", "payload": "{}"}',
                                   b'{"@": "ClientQuery", "qid": true, "payload": "{}"}',
                                   b'{"@": "ClientAnswer", "qid": 1, "response": null}',
                                   b'{"@": "ClientAnswer", "qid": 1}'])
def test_bad_frames_refused(frame: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(frame)


def test_register_speaks_our_version() -> None:
    """Who may register is the transport's business (CURVE with the run's partition key)."""
    reg = wire.register("p1", "h", 1, (("n", 1),), ())
    assert wire.check_register(reg) is None
    old = wire.Register(1, "p1", "h", 1, (("n", 1),), ())
    assert "protocol version 1" in (wire.check_register(old) or "")


def test_reports_travel_in_one_frame_and_keep_their_order() -> None:
    msgs = [IterationStarted("j", 3, "n1[0,1]", "/wd", 1.0, 2.0, 2, 123),
            IterationFinished("j", 3, 0, 2.0, 2.5, "n1[0,1]", "/wd", 2),
            IterationsDropped("j", range(4, 9), "canceled", 4.0, True),
            IterationStarted("k", 0, "n2[0]", "/w", 1, 2, 1, None),
            IterationFinished("k", 0, -9, 2.0, 3.0, "n2[0]", "/w", 1, "killed", True),
            wire.Heartbeat(5.0)]
    frame = batchwire.encode_batch(msgs)
    assert frame.startswith(b"[")
    back, errors = batchwire.decode_frame(frame)
    assert back == msgs and errors == []
    one = [wire.Heartbeat(1.0)]
    assert batchwire.decode_frame(batchwire.encode_batch(one)) == (one, [])  # a single message keeps its plain form


@pytest.mark.parametrize("bad", [
    ["s", "j", "3", "n1[0]", "/wd", 1.0, 2.0, 1, None],  # iteration not a number
    ["s", "j", 3, "n1[0]", "/wd", 1.0, 2.0, True, None],  # cores a bool
    ["f", "j", 3, 0, 1.0, 2.0, "n1[0]", "/wd", 1, None],  # a field short
    ["f", "j", 3, 0, 1.0, "late", "n1[0]", "/wd", 1, None, False],  # a time not a number
    ["x", 1], [], 7, {"@": "Nope"},
])
def test_a_bad_record_in_a_batch_is_dropped_alone(bad: object) -> None:
    import json

    good = ["s", "j", 1, "n1[0]", "/wd", 1.0, 2.0, 1, 99]
    msgs, errors = batchwire.decode_frame(json.dumps([good, bad, good]).encode())
    assert len(msgs) == 2 and all(isinstance(m, IterationStarted) and m.pid == 99 for m in msgs)
    assert len(errors) == 1 and errors[0]
    with pytest.raises(wire.WireError):
        batchwire.decode_frame(b"[1, 2")


@pytest.mark.parametrize("column,cell", [
    (2, True),  # an iteration that is a bool
    (2, 2 ** 70),  # an iteration beyond a whole number
    (2, 1.5),  # ... or not whole
    (3, 7),  # an allocation that is no string
    (6, None),  # a start time missing (NaN and Infinity are no JSON: the frame goes)
    (6, "now"),
    (7, -2 ** 70),  # a pid beyond a whole number
    (7, "1"),
])
def test_a_batch_with_one_bad_cell_is_dropped_whole(column: int, cell: Any) -> None:
    good = ["S", "j", [0, 1, 2], ["n0[0]", "n0[1]", "n0[2]"], ["/w", "/w", "/w"], [1.0, 1.0, 1.0], [2.0, 2, 2.5],
            [None, 12, None], 3]
    msgs, errors = batchwire.decode_frame(json.dumps([good]).encode())
    assert not errors and msgs[0].pids == (None, 12, None) and msgs[0].started == (2.0, 2, 2.5)
    bad = list(good)
    bad[column] = list(good[column])
    bad[column][1] = cell
    msgs, errors = batchwire.decode_frame(json.dumps([good, bad]).encode())
    assert len(msgs) == 1 and len(errors) == 1 and "IterationsStarted" in errors[0], (msgs, errors)
