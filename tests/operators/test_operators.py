"""The rest of the operator table, end to end, against a serial evaluation."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from olympipe import Pipeline, PipelineError
from tests.engines import stagefns as fns
from tests.helpers import plus_one, times_2


def parity(x: int) -> tuple[int | None, int | None]:
    return (x, None) if x % 2 == 0 else (None, x)


def test_split_infers_arity_and_routes() -> None:
    evens, odds = Pipeline(range(20)).split(parity)
    a, b = Pipeline.wait_for_all_results([evens, odds])
    assert a == list(range(0, 20, 2))
    assert b == list(range(1, 20, 2))


def test_split_with_explicit_n_and_gather_back() -> None:
    left, right = Pipeline(range(30)).split(lambda x: (x, -x), n=2)
    merged = left.task(plus_one).gather(right.task(times_2))
    got = merged.wait_for_result()
    assert sorted(got) == sorted([x + 1 for x in range(30)] + [-2 * x for x in range(30)])
    assert [x for x in got if x > 0] == list(range(1, 31))  # each input keeps its order


def test_split_wrong_arity_names_stage() -> None:
    with pytest.raises(PipelineError) as info:
        Pipeline(range(3)).split(lambda x: (x,), n=2)[0].wait_for_result()
    assert "2 values" in str(info.value)


def test_gather_of_different_sources() -> None:
    a = Pipeline(range(100)).task(plus_one)
    b = Pipeline("abc")
    got = a.gather(b).wait_for_result()
    assert [x for x in got if isinstance(x, int)] == list(range(1, 101))
    assert [x for x in got if isinstance(x, str)] == ["a", "b", "c"]


def test_reduce_and_failure_has_no_partial_fold() -> None:
    assert Pipeline(range(101)).reduce(0, lambda x, acc: acc + x).wait_for_result() == [5050]

    def bad(x: int, acc: int) -> int:
        if x == 50:
            raise ArithmeticError("no")
        return acc + x

    seen: list[int] = []

    def consume() -> None:
        seen.extend(Pipeline(range(101)).reduce(0, bad))

    with pytest.raises(PipelineError) as info:
        consume()
    assert seen == []  # no fold of the items before the failure comes out
    assert info.value.item_repr == "50"


def endless() -> Iterator[int]:
    yield from itertools.count()


def test_limit_stops_an_infinite_source_and_closes_it() -> None:
    closed = []

    def source() -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.append(True)

    assert Pipeline(source()).task(plus_one, count=2).limit(1000).wait_for_result() == list(range(1, 1001))
    assert closed == [True]
    assert Pipeline(endless()).limit(0).wait_for_result() == []


def test_limit_in_the_middle() -> None:
    got = Pipeline(endless()).limit(50).task(times_2).batch(10).wait_for_result()
    assert got == [[2 * x for x in range(i, i + 10)] for i in range(0, 50, 10)]


def test_timeout_ends_the_stream_cleanly() -> None:
    release = threading.Event()

    def trickle() -> Iterator[int]:
        yield from range(5)
        release.wait(10)  # silence far longer than the timeout; released once the run is over
        yield 99

    try:
        assert Pipeline(trickle()).timeout(1.0).task(plus_one).wait_for_result() == [1, 2, 3, 4, 5]
    finally:
        release.set()


def test_temporal_batch_windows() -> None:
    """A burst's window closes on time even though no item comes after it: the next burst
    starts only once the caller has the window that holds the last one."""
    delivered = threading.Event()

    def bursts() -> Iterator[int]:
        for burst in range(3):
            delivered.clear()
            yield from range(burst * 10, burst * 10 + 5)
            assert delivered.wait(30), "a window never closed while the source paused"

    got = []
    for window in Pipeline(bursts()).temporal_batch(0.3):
        got.append(window)
        if window[-1] % 10 == 4:  # the burst's last item: let the next one come
            delivered.set()
    assert all(got), "no empty lists"
    assert [x for b in got for x in b] == [x for b in range(3) for x in range(b * 10, b * 10 + 5)]
    assert not any(b[0] // 10 != b[-1] // 10 for b in got)  # no window spans two bursts
    assert len(got) == 3


def test_on_error_replacement_drop_and_failure() -> None:
    def inv(x: int) -> float:
        return 1 / x

    got = Pipeline(range(-2, 3)).task(inv, on_error=lambda x, e: None).wait_for_result()
    assert got == [-0.5, -1.0, 1.0, 0.5]
    named: list[object] = (
        Pipeline(range(-1, 2)).task(inv, on_error=lambda x, e: type(e).__name__).wait_for_result()
    )
    assert named == [-1.0, "ZeroDivisionError", 1.0]

    def bad_handler(x: int, e: Exception) -> float:
        raise KeyError("handler failed")

    with pytest.raises(PipelineError) as info:
        Pipeline(range(-1, 2)).task(inv, on_error=bad_handler).wait_for_result()
    assert "handler failed" in str(info.value)


def sleepy(x: int) -> int:
    time.sleep(0.1)
    return x


async def asleep(x: int) -> int:
    await asyncio.sleep(0.1)
    return x * 2


def test_threads_inside_a_stage() -> None:
    assert Pipeline(range(100)).task(sleepy, count=1, concurrency=20).wait_for_result() == list(range(100))
    peaks = Pipeline(range(100)).task(fns.peak_in_threads, concurrency=20).wait_for_result()
    assert max(peaks) >= 10  # items ran side by side in one worker (its chunks hold 20 or more)


def test_coroutines_inside_a_stage() -> None:
    got = Pipeline(range(100)).task(asleep, concurrency=20).wait_for_result()
    assert got == [x * 2 for x in range(100)]
    peaks = Pipeline(range(100)).task(fns.peak_in_coroutines, concurrency=20).wait_for_result()
    assert max(peaks) >= 10
    assert Pipeline(range(3)).task(asleep).wait_for_result() == [0, 2, 4]


def test_debug_prints_each_item_to_stderr_in_order(capfd: pytest.CaptureFixture[str]) -> None:
    assert Pipeline([1, "two", [3]]).debug().wait_for_result() == [1, "two", [3]]
    out, err = capfd.readouterr()
    assert err.splitlines() == ["[debug] 1", "[debug] 'two'", "[debug] [3]"]
    assert out == ""


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_batch_edge_cases(size: int) -> None:
    xs = list(range(10))
    assert Pipeline(xs).batch(size).wait_for_result() == [xs[i : i + size] for i in range(0, 10, size)]
    assert Pipeline([]).batch(size).wait_for_result() == []
    assert Pipeline([[1, 2]]).batch(size).wait_for_result() == [[[1, 2]]]


def late_for_small(x: int) -> int:
    time.sleep(0.05 if x < 4 else 0.0)
    return x


def test_unordered_task_yields_in_completion_order_and_loses_nothing() -> None:
    got = Pipeline(range(200)).task(late_for_small, count=2, ordered=False).wait_for_result()
    assert sorted(got) == list(range(200))
    assert got != list(range(200)), "slow early items no longer hold the others back"
    ordered = Pipeline(range(200)).task(late_for_small, count=2).wait_for_result()
    assert ordered == list(range(200))


class SleepyModel:
    def __init__(self, delay: float) -> None:
        self.delay = delay

    def predict(self, x: int) -> int:
        time.sleep(self.delay)
        return x * 10


def test_class_task_with_threads() -> None:
    got = (
        Pipeline(range(60))
        .class_task(SleepyModel, SleepyModel.predict, [0.1], concurrency=20)
        .wait_for_result()
    )
    assert got == [x * 10 for x in range(60)]
    model = Pipeline(range(60)).class_task(fns.PeakModel, fns.PeakModel.predict, concurrency=20)
    peaks = model.wait_for_result()
    assert max(peaks) >= 10  # one instance, called from 20 threads


@pytest.mark.parametrize("xs", [[], [7], [None, None], [[1], [2, 3]]])
def test_edge_sources_through_every_stateless_operator(xs: list[object]) -> None:
    got = Pipeline(xs).task(lambda x: x).filter(lambda x: True).explode(lambda x: [x]).wait_for_result()
    assert got == xs


@pytest.mark.parametrize("how", ["break", "error"])
def test_source_generator_is_closed_however_the_run_ends(how: str) -> None:
    closed: list[bool] = []

    def source() -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.append(True)

    def fail_at_500(x: int) -> int:
        if x == 500:
            raise ValueError("stop here")
        return x

    if how == "break":
        for x in Pipeline(source()).task(plus_one):
            if x == 100:
                break
    else:
        with pytest.raises(PipelineError):
            Pipeline(source()).task(fail_at_500).wait_for_result()
    assert closed == [True]
