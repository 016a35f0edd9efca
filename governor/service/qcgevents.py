"""hpilot's state events in QCG-PilotJob's publisher format, for QCG-PilotJob's own client.

QCG-PilotJob publishes one frame per event, ``"TOPIC {json}"``, on five topics: ``JST``
(a job's state changed), ``JFI`` (a job finished), ``IST`` / ``IFI`` (the same for one
iteration, with ``"it"``) and ``NOJ`` (no job is left to run).  Its client subscribes to
``IFI``, ``JFI`` and ``NOJ`` and is woken by them in ``wait4``, ``wait4all`` and
``wait4_any_job_finish``.  hpilot's own, richer events keep their own topics (``job``,
``iteration``, ``iterations``) on the same socket; a subscriber gets only the topics it
asked for, and :class:`Topics` lets the publisher skip building frames nobody wants.

One difference on purpose: the ``JFI`` of an iterative job carries the job's own final
state (QCG-PilotJob 0.14.2 sends the state of its last iteration there, so ``wait4``
could say SUCCEED for a job that FAILED).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Optional, Set

FINAL = frozenset({"SUCCEED", "FAILED", "CANCELED", "OMITTED"})
TOPICS = (b"JST", b"JFI", b"IST", b"IFI", b"NOJ")


class Topics:
    """The QCG-PilotJob topics someone subscribed to, from an XPUB socket's subscription
    messages (``\\x01topic`` subscribes, ``\\x00topic`` unsubscribes; the XPUB is verbose:
    every subscription comes through, but only the last unsubscription of a topic)."""

    def __init__(self) -> None:
        self.wanted: Set[bytes] = set()

    def update(self, message: Any) -> None:
        if not message:
            return
        prefix = message[1:]
        hit = [t for t in TOPICS if t.startswith(prefix)]  # b"" subscribes to everything
        if message[0] == 1:
            self.wanted.update(hit)
        elif message[0] == 0 and prefix:
            self.wanted.difference_update(hit)
        elif message[0] == 0:
            self.wanted.clear()

    def __bool__(self) -> bool:
        return bool(self.wanted)


def frames(event: Dict[str, Any], manager: Optional[str], wanted: Set[bytes]) -> Iterator[str]:
    """The QCG-PilotJob frames for one hpilot event (only the topics in ``wanted``)."""
    kind = event.get("event")
    state = event.get("state")
    if kind == "job":
        yield from _one(wanted, b"JST", b"JFI", {"manager": manager, "job": event["job"], "state": state})
    elif kind == "iteration":
        yield from _one(wanted, b"IST", b"IFI", {"manager": manager, "job": event["job"], "state": state,
                                                  "it": event["iteration"]})
    elif kind == "iterations":  # a range or list of iterations dropped at once: one event each, as QCG
        span = event.get("range")
        its = range(span[0], span[1]) if span else event.get("its", ())
        for it in its:
            yield from _one(wanted, b"IST", b"IFI", {"manager": manager, "job": event["job"], "state": state,
                                                      "it": it})
    elif kind == "nojobs" and b"NOJ" in wanted:
        yield "NOJ " + json.dumps({"manager": manager})


def _one(wanted: Set[bytes], status: bytes, finished: bytes, data: Dict[str, Any]) -> Iterator[str]:
    text: Optional[str] = None
    if status in wanted:
        text = json.dumps(data)
        yield f"{status.decode()} {text}"
    if data["state"] in FINAL and finished in wanted:
        yield f"{finished.decode()} {text or json.dumps(data)}"
