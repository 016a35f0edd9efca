"""The governor <-> partition codec: every message round-trips; bad frames are refused."""

from __future__ import annotations

import pytest
from hpilot.governor.jobspec import parse_job
from hpilot.partition import wire
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
    Work(_spec(), range(0, 1_000_000), 1.5),
    Work(_spec(), (1, 3, 4), 1.5),
    CancelJob("j", "why", 2.0),
    Shutdown("bye", 3.0),
    IterationStarted("j", 3, "n1[0,1]", "/wd", 1.0, 2.0, 2, 123),
    IterationFinished("j", 3, 0, 1.0, 2.0, "n1[0]", "/wd"),
    IterationFinished("j", 3, -9, 1.0, 2.0, "n1[0]", "/wd", 1, "killed", True),
    IterationsDropped("j", range(2, 9), "canceled", 4.0, True),
    wire.Registered("p1", 1.0), wire.Refused("no"), wire.Heartbeat(1.0), wire.Bye("x"), wire.Leaving("drain"),
    wire.register("s", "p1", "host", 7, (("n1", 4), ("n2", 4)), ("gpu",)),
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
                                   b'{"@": "TaskSpec", "job": "j"}'])
def test_bad_frames_refused(frame: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(frame)


def test_register_proof() -> None:
    reg = wire.register("secret", "p1", "h", 1, (("n", 1),), ())
    assert wire.check_register("secret", reg) is None
    assert "proof" in (wire.check_register("other", reg) or "")
