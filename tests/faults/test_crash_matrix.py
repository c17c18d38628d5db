"""Crash kinds x moments x positions: every one is WorkerDied, promptly, with nothing left."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from olympipe import Pipeline, PipelineError, WorkerDied
from tests.crashes import CRASHES
from tests.helpers import plus_one

pytestmark = pytest.mark.faults

N = 200


def crasher(kind: str, at: int) -> Callable[[int], int]:
    def stage(x: int) -> int:
        if x == at:
            CRASHES[kind]()
        return x

    return stage


class CrashOnFlush:
    """A stage that dies in close(), after its last item, while the stream is being flushed."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def work(self, x: int) -> int:
        return x

    def close(self) -> None:
        CRASHES[self.kind]()


def same(x: int) -> int:
    return x


def positions(stage: Callable[[int], int]) -> dict[str, Callable[[], Pipeline[Any]]]:
    return {
        "first": lambda: Pipeline(range(N)).task(stage).task(plus_one),
        "middle_count4": lambda: Pipeline(range(N)).task(same).task(stage, count=4).task(plus_one),
        "branch": lambda: Pipeline(range(N)).task(stage),
        "after_gather": lambda: Pipeline(range(N)).gather(Pipeline(range(N, 2 * N))).task(stage),
    }


@pytest.mark.parametrize("kind", sorted(CRASHES))
@pytest.mark.parametrize("at", [0, N // 2])
@pytest.mark.parametrize("where", ["first", "middle_count4", "branch", "after_gather"])
def test_worker_crash_is_worker_died(kind: str, at: int, where: str) -> None:
    pipe = positions(crasher(kind, at))[where]()
    pipes = [Pipeline(range(N)).task(plus_one), pipe] if where == "branch" else [pipe]
    t0 = time.monotonic()
    with pytest.raises(WorkerDied) as info:
        Pipeline.wait_for_all_results(pipes)
    assert time.monotonic() - t0 < 3
    assert info.value.stage == "stage"
    expected = {"os_exit": 3, "sigkill": -9, "segfault": -11}[kind]
    assert info.value.exitcode == expected


@pytest.mark.parametrize("kind", sorted(CRASHES))
def test_crash_during_end_of_stream_flush(kind: str) -> None:
    pipe = Pipeline(range(50)).class_task(CrashOnFlush, CrashOnFlush.work, [kind], CrashOnFlush.close)
    with pytest.raises(WorkerDied):
        pipe.batch(7).wait_for_result()


class Unloadable:
    """Pickles fine, fails to unpickle on the other side."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise ValueError("this value cannot be rebuilt")


def test_item_that_fails_to_unpickle() -> None:
    made: Pipeline[Any] = Pipeline([1, 2]).task(lambda x: Unloadable(), name="make")
    pipe = made.task(plus_one, name="next")
    with pytest.raises(PipelineError) as info:
        pipe.wait_for_result()
    assert "unpickle" in str(info.value)
    assert info.value.stage == "next"


@pytest.mark.parametrize(
    ("build", "stage"),
    [
        (lambda p: p.filter(lambda x: 1 / (x - 3), name="f"), "f"),
        (lambda p: p.explode(lambda x: [1 / (x - 3)]), "<lambda>"),
        (lambda p: p.split(lambda x: (1 / (x - 3), x), n=2)[0], "<lambda>"),
        (lambda p: p.reduce(0, lambda x, acc: acc + 1 / (x - 3)), "<lambda>"),
    ],
)
def test_exception_in_other_operators(build: Callable[[Pipeline[int]], Pipeline[Any]], stage: str) -> None:
    with pytest.raises(PipelineError) as info:
        build(Pipeline(range(10))).wait_for_result()
    assert info.value.stage == stage
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.item_repr == "3"


def test_exception_in_class_constructor() -> None:
    class Broken:
        def __init__(self) -> None:
            raise OSError("no model file")

        def run(self, x: int) -> int:
            return x

    with pytest.raises(PipelineError) as info:
        Pipeline(range(3)).class_task(Broken, Broken.run).wait_for_result()
    assert "no model file" in str(info.value)
    assert info.value.item_repr is None
