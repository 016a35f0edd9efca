"""The ``${name}`` variables of QCG-PilotJob job descriptions.

Strings are compiled once at submit into a :class:`Template` (literal pieces and
variable names), so that filling a template for each of a million iterations is a
join, not a regex scan.

Which unknown names are errors: in ``execution.script`` (bash text) an unknown
``${NAME}`` is a shell variable and is left for bash.  Everywhere else (exec,
args, env, wd, stdin/stdout/stderr, venv, modules) nothing would ever expand it,
so it is almost certainly a typo and the submit is refused with a suggestion.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple, Union

SUBMIT_VARIABLES = ("rcnt", "sname", "date", "time", "dateTime")
# Filled when an iteration is launched (resources are known by then).
# As QCG-PilotJob fills them: ${it} the iteration's index, ${itval} its value (the index again
# unless the job iterates over "values"); ${jname} (the job's name) and ${uniq} (one per submit
# request) are known at submit already and are filled there.
LAUNCH_VARIABLES = ("it", "itval", "uniq", "jname", "root_wd", "ncores", "nnodes", "nlist")
KNOWN_VARIABLES = SUBMIT_VARIABLES + LAUNCH_VARIABLES

_VAR = re.compile(r"\$\{\s*([^}]*?)\s*\}")


class UnknownVariable(ValueError):
    def __init__(self, name: str) -> None:
        close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1)
        hint = f" (did you mean ${{{close[0]}}}?)" if close else ""
        known = ", ".join(KNOWN_VARIABLES)
        super().__init__(f"unknown variable ${{{name}}}{hint}; known: {known}")
        self.name = name


Piece = Union[str, Tuple[str]]  # a literal, or (variable name,)


@dataclass(frozen=True)
class Template:
    pieces: Tuple[Piece, ...]

    @property
    def is_literal(self) -> bool:
        return all(isinstance(p, str) for p in self.pieces)

    @property
    def text(self) -> Optional[str]:
        """The whole string when it has no variables, else None."""
        if not self.is_literal:
            return None
        return "".join(p for p in self.pieces if isinstance(p, str))

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(p[0] for p in self.pieces if isinstance(p, tuple))

    def fill(self, values: Mapping[str, str]) -> str:
        """Replace the variables present in ``values``; others stay as written."""
        pieces = self.pieces
        if len(pieces) == 1 and type(pieces[0]) is str:  # the common case: a literal (a task's exec)
            return pieces[0]
        out = []
        for p in pieces:
            if isinstance(p, str):
                out.append(p)
            else:
                v = values.get(p[0])
                out.append("${" + p[0] + "}" if v is None else v)
        return "".join(out)

    def partial(self, values: Mapping[str, str]) -> Template:
        """Substitute what is known now and keep the rest as variables."""
        return compile_template(self.fill(values), allow_unknown=True)


def compile_template(text: str, allow_unknown: bool = False) -> Template:
    pieces: list[Piece] = []
    pos = 0
    for m in _VAR.finditer(text):
        name = m.group(1)
        if name not in KNOWN_VARIABLES:
            if not allow_unknown:
                raise UnknownVariable(name)
            continue  # left in the literal text, untouched (a shell variable)
        if m.start() > pos:
            pieces.append(text[pos : m.start()])
        pieces.append((name,))
        pos = m.end()
    if pos < len(text):
        pieces.append(text[pos:])
    return Template(_merge_literals(pieces, text))


def _merge_literals(pieces: list[Piece], text: str) -> Tuple[Piece, ...]:
    if not any(isinstance(p, tuple) for p in pieces):
        return (text,) if text else ()
    merged: list[Piece] = []
    for p in pieces:
        if merged and isinstance(p, str) and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + p
        else:
            merged.append(p)
    return tuple(merged)

