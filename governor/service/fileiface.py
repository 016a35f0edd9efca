"""The file interface: a JSON file of requests, read once at start (manual ch. 10).

A file may hold a list of requests or a single request object.  Errors give the
line and column, because a request file of 20,000 jobs is not found by eye.
"""

from __future__ import annotations

import json
from typing import Any, List


class RequestFileError(ValueError):
    pass


def load_requests(path: str) -> List[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise RequestFileError(f"{path}: no such request file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RequestFileError(f"{path}: cannot read: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestFileError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise RequestFileError(f"{path}: expected a list of requests (or one request object), "
                               f"found {type(data).__name__}")
    return data
