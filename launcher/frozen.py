"""A faster ``__init__`` for the frozen dataclasses made once per task.

Messages and events are frozen dataclasses (immutable, compared by value, typed). A
frozen dataclass's generated ``__init__`` sets each field with ``object.__setattr__``,
which made one 12-field report cost 1.2 µs to build; a task's path through a partition
builds about eight such objects (launch request, start, exit, the core's events, the
reports), a fifth of a partition manager's CPU per task in a dry run. :func:`fast_init`
replaces that ``__init__`` with one that writes the instance's ``__dict__`` directly: the
same signature, defaults and result (equality, hashing, repr and immutability are the
dataclass's own), at a quarter of the cost.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, TypeVar

T = TypeVar("T")


def fast_init(cls: T) -> T:
    """Give the frozen dataclass ``cls`` a direct ``__init__`` (see the module's docstring).

    Only for plain ones: every field in ``__init__``, no ``default_factory``, no
    ``__post_init__``, instances with a ``__dict__``; anything else is a mistake that
    fails at import, never a silent difference."""
    assert isinstance(cls, type)
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"fast_init: {cls.__name__} is not a frozen dataclass")
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__ or any(
            not f.init or f.default_factory is not dataclasses.MISSING for f in fields):
        raise TypeError(f"fast_init: {cls.__name__} has a __post_init__, __slots__, a field out of __init__ "
                        "or a default_factory: keep the dataclass's own __init__")
    defaults: Dict[str, Any] = {f"_d_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}
    args = ", ".join(f.name if f.default is dataclasses.MISSING else f"{f.name}=_d_{f.name}" for f in fields)
    body = "".join(f"    d[{f.name!r}] = {f.name}\n" for f in fields) or "    pass\n"
    src = f"def __init__(self, {args}):\n    d = self.__dict__\n{body}" if fields else "def __init__(self):\n    pass\n"
    namespace = dict(defaults)
    exec(src, namespace)  # noqa: S102 - generated from the field names alone, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    type.__setattr__(cls, "__init__", init)  # the class is a dataclass mypy knows; this is its own init
    return cls
