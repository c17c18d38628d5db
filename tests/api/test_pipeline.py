"""End to end through real worker processes, for every start method."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from olympipe import Pipeline
from tests.conftest import START_METHODS
from tests.helpers import is_even, jitter, plus_one, times_2


@pytest.fixture(params=START_METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_seed_times_2(method: str) -> None:
    datas = list(range(10))
    p = Pipeline(datas, start_method=method)
    assert p.task(times_2).wait_for_result() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_lambdas_and_closures(method: str) -> None:
    k = 7
    got = Pipeline(range(100), start_method=method).task(lambda x: x * k).filter(lambda x: x % 2 == 0)
    assert got.wait_for_result() == [x * 7 for x in range(100) if x * 7 % 2 == 0]


def test_order_kept_with_parallel_workers_and_jitter(method: str) -> None:
    got = Pipeline(range(300), start_method=method).task(jitter, count=4).task(plus_one, count=3)
    assert got.wait_for_result() == [x + 1 for x in range(300)]


def test_chain_of_every_foundation_operator() -> None:
    got: list[Any] = (
        Pipeline(range(50))
        .task(times_2, count=2)
        .filter(lambda x: x % 3 != 0)
        .batch(4)
        .explode()
        .batch(3, keep_incomplete_batch=False)
        .wait_for_result()
    )
    flat = [x * 2 for x in range(50) if x * 2 % 3 != 0]
    assert got == [flat[i : i + 3] for i in range(0, len(flat) - len(flat) % 3, 3)]


def test_generator_source() -> None:
    def numbers() -> Iterator[int]:
        yield from range(1000)

    assert Pipeline(numbers()).task(plus_one, count=2).wait_for_result() == list(range(1, 1001))


def test_empty_source_and_no_stage() -> None:
    assert Pipeline([]).task(plus_one).wait_for_result() == []
    assert Pipeline(range(5)).wait_for_result() == [0, 1, 2, 3, 4]


def test_none_items_and_list_items_travel() -> None:
    assert Pipeline([None, [1, 2], None]).task(lambda x: x).wait_for_result() == [None, [1, 2], None]


def test_broadcast_branches_each_see_every_item(method: str) -> None:
    p = Pipeline(range(100), start_method=method)
    doubled = p.task(times_2)
    evens = p.filter(is_even)
    a, b = Pipeline.wait_for_all_results([doubled, evens])
    assert a == [x * 2 for x in range(100)]
    assert b == [x for x in range(100) if x % 2 == 0]


def test_wait_for_results_and_same_pipe_twice() -> None:
    p = Pipeline(range(10))
    q = p.task(plus_one)
    assert q.wait_for_results([p, q]) == [list(range(1, 11)), list(range(10)), list(range(1, 11))]


def test_pipeline_is_reusable_and_immutable() -> None:
    p = Pipeline(range(5))
    q = p.task(times_2)
    r = p.task(plus_one)
    assert q.wait_for_result() == [0, 2, 4, 6, 8]
    assert r.wait_for_result() == [1, 2, 3, 4, 5]
    assert q.wait_for_result() == [0, 2, 4, 6, 8]


def test_only_the_needed_subgraph_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    p = Pipeline(range(5))
    p.task(lambda x: marker.touch())  # a dangling branch: must not run, nor block the other
    q = p.task(plus_one)
    assert q.wait_for_result() == [1, 2, 3, 4, 5]
    assert not marker.exists()
    assert [r.name for r in q.stats().rows] == ["plus_one"]


def test_wait_for_completion_and_start() -> None:
    p = Pipeline(range(20)).task(plus_one)
    p.wait_for_completion()
    assert p.stats().rows[0].items_out == 20
    Pipeline.wait_for_all_completions([p, p.task(times_2)])
    p.start()
    p.start()
    assert p.wait_for_result() == list(range(1, 21))


def test_wait_and_reduce() -> None:
    assert Pipeline(range(10)).task(plus_one).wait_and_reduce(0, lambda x, acc: acc + x) == 55


def test_iteration_streams_in_order(method: str) -> None:
    p = Pipeline(range(500), start_method=method).task(jitter, count=3)
    assert list(p) == list(range(500))


def test_break_out_of_iteration_cleans_up() -> None:
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    seen = []
    for x in Pipeline(endless()).task(plus_one, count=2):
        seen.append(x)
        if len(seen) == 100:
            break
    assert seen == list(range(1, 101))


def test_class_task_end_to_end(tmp_path: object) -> None:
    class Scaler:
        def __init__(self, k: int, offset: int = 0) -> None:
            self.k = k
            self.offset = offset

        def apply(self, x: int) -> int:
            return x * self.k + self.offset

    got = Pipeline(range(20)).class_task(Scaler, Scaler.apply, [3], class_kwargs={"offset": 1}, count=2)
    assert got.wait_for_result() == [x * 3 + 1 for x in range(20)]


def test_single_worker_stage_sees_items_in_order_behind_parallel_workers(tmp_path: object) -> None:
    import pathlib

    log = pathlib.Path(str(tmp_path)) / "seen"

    def record(x: int) -> int:  # a side effect: the order it happens in is what a writer sees
        with log.open("a") as f:
            f.write(f"{x}\n")
        return x

    Pipeline(range(300)).task(jitter, count=4).task(record).wait_for_result()
    assert [int(v) for v in log.read_text().split()] == list(range(300))


def test_a_generator_source_read_by_an_earlier_run_is_refused_not_silently_empty() -> None:
    p = Pipeline(x for x in range(5)).task(abs)
    assert p.wait_for_result() == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="already read"):
        p.wait_for_result()
    again = Pipeline(range(5)).task(abs)  # a range reads the same way every time
    assert again.wait_for_result() == again.wait_for_result() == [0, 1, 2, 3, 4]
