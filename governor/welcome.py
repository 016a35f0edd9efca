"""The event welcome: how a subscriber learns that its subscriptions are in place.

A client subscribes to its topics, then to a welcome topic of its own
(``hpilot-welcome/<random>``).  The service answers each welcome subscription it
reads from its XPUB by publishing that exact topic (:meth:`NetInterface.drain_subscriptions`),
so the welcome reaches only the client that asked for it, and only once the XPUB
has the subscription.  Subscriptions made after ``connect`` travel in order on the
one connection, so by then the client's other topics are in place too: a job
submitted after the welcome has every one of its events delivered.  (ZeroMQ's own
``XPUB_WELCOME_MSG`` leaves when the connection is made, before the subscriptions
may have arrived; a welcome for every subscriber, sent to all, would wake every
waiting client each time another one connects.)
"""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import zmq

WELCOME = b"hpilot-welcome"


def subscribe(sub: zmq.Socket, topics: Sequence[bytes]) -> bytes:
    """Subscribe the connected ``sub`` to ``topics``, then to a welcome of its own: its topic."""
    for topic in topics:
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    mine = WELCOME + b"/" + os.urandom(8).hex().encode()
    sub.setsockopt(zmq.SUBSCRIBE, mine)
    return mine


def answer(subscription: bytes) -> Optional[bytes]:
    """The service's side: the welcome to publish for one message read from its XPUB (None:
    not a welcome subscription).  A client's own welcome topic is answered by that topic; a
    subscription to everything, by the plain welcome."""
    if subscription[:1] != b"\x01":  # an unsubscription
        return None
    topic = subscription[1:]
    if topic.startswith(WELCOME):
        return topic
    return WELCOME if not topic else None


def wait(sub: zmq.Socket, mine: bytes, timeout: float) -> bool:
    """Receive until the welcome ``mine`` (True), or False once ``timeout`` seconds pass.  What
    comes before it is dropped: it was published before the subscriptions were all in place."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sub.poll(int(left * 1000) + 1):
            return False
        while True:
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if frames[0] == mine:
                return True
