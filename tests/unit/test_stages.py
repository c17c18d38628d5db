"""Operators as plain objects, in-process: no workers, no pipes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from olympipe._runtime.ordering import Reorder
from olympipe._stages.base import ItemFailed, Stage
from olympipe._stages.mapping import ClassTaskSpec, ExplodeSpec, FilterSpec, TaskSpec
from olympipe._stages.split import SplitSpec
from olympipe._stages.stateful import BatchSpec, LimitSpec, ReduceSpec, TemporalBatchSpec, TimeoutSpec


def run_stage(stage: Stage, chunks: list[list[Any]]) -> list[Any]:
    stage.open()
    out: list[Any] = []
    try:
        for chunk in chunks:
            out.extend(stage.process(chunk))
        out.extend(stage.finish())
    finally:
        stage.close()
    return out


def chunked(xs: list[Any], n: int) -> list[list[Any]]:
    return [xs[i : i + n] for i in range(0, len(xs), n)]


@given(st.lists(st.integers()), st.integers(1, 7))
def test_task_maps_every_item(xs: list[int], n: int) -> None:
    stage = TaskSpec(name="t", fn=lambda x: x * 3).make()
    assert run_stage(stage, chunked(xs, n)) == [x * 3 for x in xs]


def test_task_failure_names_the_item() -> None:
    def f(x: int) -> int:
        if x == 2:
            raise KeyError("two")
        return x

    stage = TaskSpec(name="t", fn=f).make()
    with pytest.raises(ItemFailed) as info:
        stage.process([0, 1, 2, 3])
    assert info.value.item == 2
    assert isinstance(info.value.__cause__, KeyError)


def test_on_error_replaces_or_drops() -> None:
    def f(x: int) -> int:
        if x % 2:
            raise ValueError
        return x

    def recover(x: int, exc: Exception) -> int | None:
        return None if x == 1 else -x

    stage = TaskSpec(name="t", fn=f, on_error=recover).make()
    assert run_stage(stage, [[0, 1, 2, 3]]) == [0, 2, -3]


def test_task_with_threads_keeps_order() -> None:
    def late(x: int) -> int:
        time.sleep(0.001 * (5 - x))
        return x

    stage = TaskSpec(name="t", fn=late, concurrency=5).make()
    assert run_stage(stage, [[0, 1, 2, 3, 4]]) == [0, 1, 2, 3, 4]


def test_async_task_runs_concurrently() -> None:
    """No item finishes before all 20 have started: one at a time would wait for ever (the
    first would time out)."""
    started = 0
    all_in: list[asyncio.Event] = []

    async def f(x: int) -> int:
        nonlocal started
        if not all_in:
            all_in.append(asyncio.Event())
        started += 1
        if started == 20:
            all_in[0].set()
        await asyncio.wait_for(all_in[0].wait(), 10)
        return x + 1

    stage = TaskSpec(name="t", fn=f, concurrency=20).make()
    assert run_stage(stage, [list(range(20))]) == list(range(1, 21))
    assert started == 20


def test_class_task_builds_in_open_and_closes_always() -> None:
    events: list[str] = []

    class Model:
        def __init__(self, k: int) -> None:
            events.append("init")
            self.k = k

        def predict(self, x: int) -> int:
            if x < 0:
                raise ValueError
            return x * self.k

        def close(self) -> None:
            events.append("close")

    spec = ClassTaskSpec(
        name="m", constructor=Model, method=Model.predict, args=(10,), close_method=Model.close
    )
    stage = spec.make()
    assert events == []
    assert run_stage(stage, [[1, 2]]) == [10, 20]
    assert events == ["init", "close"]
    stage = spec.make()
    with pytest.raises(ItemFailed):
        run_stage(stage, [[1, -1]])
    assert events == ["init", "close", "init", "close"]


@given(st.lists(st.one_of(st.none(), st.integers())), st.integers(1, 5))
def test_filter(xs: list[int | None], n: int) -> None:
    assert run_stage(FilterSpec(name="f").make(), chunked(xs, n)) == [x for x in xs if x is not None]
    even = FilterSpec(name="f", pred=lambda x: x is not None and x % 2 == 0).make()
    assert run_stage(even, chunked(xs, n)) == [x for x in xs if x is not None and x % 2 == 0]


@given(st.lists(st.lists(st.integers(), max_size=4)), st.integers(1, 5))
def test_explode(xs: list[list[int]], n: int) -> None:
    flat = [y for x in xs for y in x]
    assert run_stage(ExplodeSpec(name="e").make(), chunked(xs, n)) == flat
    doubled = ExplodeSpec(name="e", fn=lambda x: x + x).make()
    assert run_stage(doubled, chunked(xs, n)) == [y for x in xs for y in x + x]


@given(st.lists(st.integers()), st.integers(1, 6), st.integers(1, 5), st.booleans())
def test_batch_matches_chunked(xs: list[int], size: int, n: int, keep: bool) -> None:
    expected = chunked(xs, size)
    if not keep and expected and len(expected[-1]) < size:
        expected = expected[:-1]
    assert run_stage(BatchSpec(name="b", size=size, keep_incomplete=keep).make(), chunked(xs, n)) == expected


def test_reduce_limit_split() -> None:
    assert run_stage(
        ReduceSpec(name="r", accumulator=0, reducer=lambda x, a: a + x).make(), [[1, 2], [3]]
    ) == [6]
    limit = LimitSpec(name="l", n=3).make()
    assert limit.process([1, 2]) == [1, 2]
    assert not limit.exhausted
    assert limit.process([3, 4]) == [3]
    assert limit.exhausted
    split = SplitSpec(name="s", fn=lambda x: (x, None if x % 2 else x * 10), n=2).make()
    assert split.process([1, 2]) == ([1, 2], [20])
    with pytest.raises(ItemFailed):
        split.process([(1,)])


def test_time_driven_stages() -> None:
    timeout = TimeoutSpec(name="t", seconds=0.01).make()
    timeout.open()
    deadline = timeout.deadline()
    assert deadline is not None
    timeout.tick(deadline + 1)
    assert timeout.exhausted
    tb = TemporalBatchSpec(name="tb", seconds=10).make()
    assert tb.process([1, 2]) == []
    assert tb.deadline() is not None
    assert tb.tick(time.monotonic()) == [[1, 2]]
    assert tb.tick(time.monotonic()) == []
    assert tb.process([3]) == []
    assert tb.finish() == [[3]]


@given(st.permutations(list(range(12))))
def test_reorder_releases_in_sequence(order: list[int]) -> None:
    reorder = Reorder(1)
    out: list[list[Any]] = []
    for seq in order:
        out.extend(chunk for _, chunk in reorder.push(0, seq, [seq]))
    assert out == [[i] for i in range(12)]
    assert reorder.buffered == 0


def _gen(n: int) -> Any:
    yield from range(n)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: [x, x],
        lambda x: (x,),
        lambda x: range(x),
        lambda x: range(x * 1000),  # sized, too many to take whole: read in runs
        lambda x: _gen(x),
        lambda x: str(x),
        lambda x: {x: 1},
        lambda x: _gen(x) if x % 2 else [x] * 3,
    ],
)
def test_explode_in_parts_gives_what_process_gives(fn: Any) -> None:
    stage = ExplodeSpec(name="e", fn=fn).make()
    chunk = list(range(12))
    parts = list(stage.stream(chunk))
    assert [e for part in parts for e in part] == stage.process(chunk)
    assert all(parts)


def test_explode_sends_an_element_of_a_slow_iterable_before_making_the_next() -> None:
    made: list[int] = []

    def slow(_: object) -> Any:
        for i in range(3):
            time.sleep(0.02)  # a camera's pace: more than a part's 10 ms
            made.append(i)
            yield i

    parts = ExplodeSpec(name="e", fn=slow).make().stream([None])
    assert next(parts) == [0]
    assert made == [0]
    assert list(parts) == [[1], [2]]


def test_explode_sends_large_buffers_one_by_one() -> None:
    np = pytest.importorskip("numpy")

    def frames(_: object) -> Any:
        for i in range(5):
            yield np.full(1 << 19, i)  # 4 MiB

    parts = list(ExplodeSpec(name="e", fn=frames).make().stream([None]))
    assert [len(p) for p in parts] == [1] * 5


def test_explode_in_parts_fails_on_the_item_whose_iterable_fails() -> None:
    def breaks(x: int) -> Any:
        yield x
        if x == 2:
            raise ValueError("broken")
        yield x

    with pytest.raises(ItemFailed) as failed:
        list(ExplodeSpec(name="e", fn=breaks).make().stream([1, 2, 3]))
    assert failed.value.item == 2
    assert isinstance(failed.value.__cause__, ValueError)
