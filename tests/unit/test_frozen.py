"""fast_init: the direct __init__ of the frozen dataclasses made once per task."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
from hpilot.launcher.frozen import fast_init
from hpilot.partition.messages import IterationFinished


@dataclass(frozen=True)
class Plain:
    job: str
    iteration: int
    reason: Optional[str] = None
    canceled: bool = False


Fast = fast_init(dataclass(frozen=True)(type("Fast", (), {"__annotations__": dict(Plain.__annotations__),
                                                          "reason": None, "canceled": False})))


@pytest.mark.parametrize("args, kwargs", [(("a", 1), {}), (("a", 1, "why"), {}), (("a",), {"iteration": 2}),
                                          ((), {"job": "b", "iteration": 3, "canceled": True})])
def test_the_same_object_as_the_dataclass_makes(args: Any, kwargs: Any) -> None:
    slow, fast = Plain(*args, **kwargs), Fast(*args, **kwargs)
    assert dataclasses.astuple(slow) == dataclasses.astuple(fast)
    assert repr(fast) == repr(slow).replace("Plain", "Fast")
    assert hash(fast) == hash(Fast(*args, **kwargs)) and fast == Fast(*args, **kwargs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.job = "x"  # type: ignore[misc]
    assert dataclasses.replace(fast, iteration=9).iteration == 9


def test_wrong_calls_fail_as_a_function_call_does() -> None:
    with pytest.raises(TypeError):
        Fast("a")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast("a", 1, nope=2)  # type: ignore[call-arg]


def test_a_report_of_the_hot_path_is_built_by_it_and_equal_by_value() -> None:
    a = IterationFinished("j", 1, 0, 1.0, 2.0, "n[0]", "/wd")
    assert IterationFinished.__init__.__qualname__ == "IterationFinished.__init__"
    assert a == IterationFinished(job="j", iteration=1, exit_code=0, started=1.0, finished=2.0, allocation="n[0]",
                                  wd="/wd", cores=1, reason=None, canceled=False)
    assert a.ok


def test_what_it_cannot_copy_is_refused_at_import() -> None:
    @dataclass(frozen=True)
    class WithFactory:
        items: Any = field(default_factory=list)

    @dataclass(frozen=True)
    class WithPost:
        x: int

        def __post_init__(self) -> None:
            pass

    @dataclass
    class NotFrozen:
        x: int

    for cls in (WithFactory, WithPost, NotFrozen):
        with pytest.raises(TypeError):
            fast_init(cls)
