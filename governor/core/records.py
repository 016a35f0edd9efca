"""Journal records: how the governor core writes what it accepted and what finished.

Pure encoding (no file, no clock): the core emits these bytes as ``Record`` actions and
the service's :class:`~hpilot.governor.service.journal.Journal` appends them; the
format itself is described there.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Dict, Optional

VERSION = 1
FILE = "journal"
STATE_LETTER = {"SUCCEED": "S", "FAILED": "F", "CANCELED": "C", "OMITTED": "O"}
LETTER_STATE = {v: k for k, v in STATE_LETTER.items()}


class JournalError(ValueError):
    """A journal that cannot be replayed at all (not a journal, another version)."""


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append({"t": "\t", "n": "\n", "\\": "\\"}.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def frame(kind: str, body: str) -> bytes:
    data = body.encode("utf-8")
    return b"%s %08x %s\n" % (kind.encode(), zlib.crc32(data), data)


def json_record(record: Dict[str, Any]) -> bytes:
    return frame("J", json.dumps(record, separators=(",", ":")))


def started_record(job: str, it: int, pid: Optional[int], when: float) -> bytes:
    return frame("S", f"{job}\t{it}\t{pid if pid is not None else ''}\t{when:.6f}")


def finished_record(job: str, it: int, state: str, exit_code: Optional[int], start: float, end: float,
                    alloc: str, wd: str, reason: Optional[str]) -> bytes:
    code = "" if exit_code is None else str(exit_code)
    return frame("I", f"{job}\t{it}\t{STATE_LETTER[state]}\t{code}\t{start:.6f}\t{end:.6f}\t"
                      f"{escape(alloc)}\t{escape(wd)}\t{escape(reason or '')}")
