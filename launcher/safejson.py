"""JSON from the network, parsed only within limits: every frame ends as a value or a DecodeError.

Python's own parser has two ways to be killed by a small frame: nesting (``[[[[...``
a thousand deep raises RecursionError, and a value nested hundreds deep breaks later
recursive code) and long numbers (``int()`` of a 5,000-digit string raises ValueError on
Python >= 3.11 and takes quadratic time on older ones).  So before parsing, :func:`loads`
checks the frame against :class:`Limits` -- its size, its nesting depth and the length of
its numbers -- and refuses ``NaN``/``Infinity`` while parsing and half characters (lone
surrogates, which no file could hold) after it; every exception of the
parser becomes :class:`DecodeError`, the one exception a receiver has to catch.

The checks run in C (``bytes.translate``, ``bytes.replace``, substring search) over the
UTF-8 bytes: a multi-byte UTF-8 sequence never contains an ASCII byte, so brackets,
quotes and digits are found exactly.  They cost a fraction of the parse itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# what structure is made of; everything else is deleted before the depth check
_STRUCTURE = b'"\\[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_UNIFY = bytes.maketrans(b"{}", b"[]")  # mismatched brackets are the parser's to refuse
_DIGITS = bytes.maketrans(bytes(range(256)), bytes(48 if 48 <= b <= 57 else 32 for b in range(256)))
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


class DecodeError(ValueError):
    """A frame that is not acceptable JSON within the limits; the text says why."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 64 * 1024 * 1024
    max_depth: int = 64  # arrays and objects inside one another
    max_digits: int = 100  # digits in a row in one number (a float's 17 or a pid's 7 are far below)


DEFAULT = Limits()


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not a number JSON allows")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def loads(data: bytes, limits: Limits = DEFAULT) -> Any:
    """The JSON value of ``data`` (UTF-8), or DecodeError; never any other exception."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"a frame is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise DecodeError(f"{len(data)} bytes, more than the {limits.max_bytes} allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    check(data, limits)
    try:
        value, end = _decoder.raw_decode(text, _skip_space(text))
    except DecodeError:
        raise
    except (ValueError, RecursionError, MemoryError, OverflowError) as e:
        raise DecodeError(f"not JSON ({e})") from None
    if text[end:].strip():
        raise DecodeError(f"not JSON (extra data at character {end})")
    if _SURROGATE.search(data) is not None:
        _no_lone_surrogates(value)
    return value


def _no_lone_surrogates(value: Any) -> None:
    """A ``\\udXXX`` escape without its pair is no character: it cannot be written to any
    file (the journal, a log, a path), so it is refused here rather than fail there."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError("a string with a lone surrogate (a \\udXXX escape that is half a character)") from None


def _skip_space(text: str) -> int:
    return len(text) - len(text.lstrip(" \t\n\r"))


def check(data: bytes, limits: Limits = DEFAULT) -> None:
    """Raise DecodeError if the UTF-8 JSON ``data`` nests deeper or has longer numbers than allowed."""
    _check_depth(data, limits.max_depth)
    run = b"0" * (limits.max_digits + 1)
    if run in data.translate(_DIGITS) and run in _STRING.sub(b'""', data).translate(_DIGITS):
        # the second look leaves out strings: digits in a string are text, not a number
        raise DecodeError(f"a number of more than {limits.max_digits} digits")


def _check_depth(data: bytes, max_depth: int) -> None:
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return  # no more brackets than the limit (strings' own included): no deeper, whatever their order
    s = data.translate(None, _NOT_STRUCTURE)
    if b'"' in s:  # take the strings out: a bracket in a string is text
        if b"\\" in s:  # escapes need the whole text to be read right
            s = _STRING.sub(b"", data).translate(None, _NOT_STRUCTURE)
        else:  # no escapes: every quote opens or closes a string
            bare = s.replace(b'""', b"")  # all quotes gone: no string held a bracket
            s = bare if b'"' not in bare else b"".join(s.split(b'"')[::2])
    s = s.translate(_UNIFY).replace(b'"', b"").replace(b"\\", b"")
    for _ in range(max_depth):
        if not s:
            return
        shorter = s.replace(b"[]", b"")  # one level of the innermost pairs
        if len(shorter) == len(s):
            raise DecodeError("unbalanced brackets")
        s = shorter
    if s:
        raise DecodeError(f"nested more than {max_depth} deep")
