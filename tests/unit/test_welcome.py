"""The service's side of the event welcome (governor/welcome.py): which topic answers which
message its XPUB hands over."""

from __future__ import annotations

from hpilot.governor import welcome


def test_a_clients_own_welcome_is_answered_by_that_topic() -> None:
    assert welcome.answer(b"\x01hpilot-welcome/0123abcd") == b"hpilot-welcome/0123abcd"


def test_a_subscription_to_everything_gets_the_plain_welcome() -> None:
    assert welcome.answer(b"\x01") == welcome.WELCOME


def test_other_topics_and_unsubscriptions_get_none() -> None:
    assert welcome.answer(b"\x01job") is None
    assert welcome.answer(b"\x00hpilot-welcome/0123abcd") is None
    assert welcome.answer(b"\x00") is None
    assert welcome.answer(b"") is None
