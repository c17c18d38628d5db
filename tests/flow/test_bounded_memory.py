"""Memory stays bounded whatever one item does: a slow item holds the others back."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from olympipe import Pipeline
from tests.conftest import START_METHODS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=START_METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


STALL = 5


def arrays() -> Iterator[np.ndarray]:
    for i in itertools.count():
        yield np.full(1 << 17, i, dtype=np.float64)  # 1 MiB


released = threading.Event()


def stall_one(a: np.ndarray) -> np.ndarray:
    if a[0] == STALL:
        released.wait(3)  # one slow item: the other worker runs ahead
    return a


def first(a: np.ndarray) -> float:
    return float(a[0])


def _source_reads(p: Pipeline[Any]) -> int:
    return p.stats().source_items


@pytest.mark.parametrize("stage_after", ["task", "sink"])
def test_a_slow_item_bounds_how_far_the_others_run_ahead(stage_after: str) -> None:
    counted: list[int] = []

    def counting() -> Iterator[np.ndarray]:
        for a in arrays():
            counted.append(1)
            yield a

    p: Pipeline[Any] = Pipeline(counting(), start_method="fork").task(stall_one, count=2)
    if stage_after == "task":
        p = p.task(first)
    got = p.limit(40).wait_for_result()
    assert [float(x if stage_after == "task" else x[0]) for x in got] == [float(i) for i in range(40)]
    # While item 5 waited 3 s, the other worker could have read thousands of arrays (GBs).
    assert len(counted) < 200, f"the source ran {len(counted)} items ahead of a stalled one"


def _first_waits_for_later_ones(fifo: str, later: int) -> Any:
    """A stage function: item 0 waits until ``later`` later items have passed the next stage."""

    def stage(item: tuple[int, bytes]) -> tuple[int, bytes]:
        if item[0] == 0:
            fd = os.open(fifo, os.O_RDWR)
            try:
                seen = 0
                while seen < later:
                    seen += len(os.read(fd, later - seen))
            finally:
                os.close(fd)
        return item

    return stage


def _tells_it_passed(fifo: str) -> Any:
    def stage(item: tuple[int, bytes]) -> int:
        fd = os.open(fifo, os.O_RDWR)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)
        return item[0]

    return stage


@pytest.mark.timeout(30)
def test_a_slow_first_chunk_finds_a_credit_into_the_next_racing_stage(tmp_path: Path, method: str) -> None:
    # Two racing stages in a row, the second with the smaller window (2 * 2 + 2 = 6 against
    # 2 * 4 + 2 = 10). Chunks 1..6 pass both stages and wait in the caller's reorder buffer
    # for chunk 0, each holding a credit of the second window until chunk 0 is back; chunk
    # 0 then needs a credit of that same window to leave the first stage.
    fifo = str(tmp_path / "passed")
    os.mkfifo(fifo)
    keep_open = os.open(fifo, os.O_RDWR)  # bytes written before item 0 reads them stay
    try:
        items = ((i, bytes(1 << 20)) for i in range(40))  # 1 MiB: one item per chunk
        got = (
            Pipeline(items, start_method=method)
            .task(_first_waits_for_later_ones(fifo, 6), count=4)
            .task(_tells_it_passed(fifo), count=2)
            .wait_for_result()
        )
    finally:
        os.close(keep_open)
    assert got == list(range(40))


@pytest.mark.timeout(30)
def test_a_slow_first_chunk_finds_a_credit_into_a_second_racing_branch(tmp_path: Path) -> None:
    # The same wait on the edge into the second branch of a racing stage: the first branch
    # carries no window of its own, the second one must not be smaller than the stage's.
    fifo = str(tmp_path / "passed")
    os.mkfifo(fifo)
    keep_open = os.open(fifo, os.O_RDWR)
    try:
        items = ((i, bytes(1 << 20)) for i in range(40))
        racing = Pipeline(items, start_method="fork").task(_first_waits_for_later_ones(fifo, 6), count=4)
        one = racing.task(lambda item: item[0], count=2)
        other = racing.task(_tells_it_passed(fifo), count=2)
        got = Pipeline.wait_for_all_results([one, other])
    finally:
        os.close(keep_open)
    assert got == [list(range(40)), list(range(40))]


def frames(count: int) -> Iterator[np.ndarray]:
    """A long iterable from one item, as a video's frames or a file's records are."""
    for i in range(count):
        yield np.full(1 << 19, i, dtype=np.float64)  # 4 MiB


def endless(_: object) -> Iterator[int]:
    yield from itertools.count()


def test_explode_sends_each_element_on_as_it_comes(method: str) -> None:
    """explode built the whole list of one item's elements before sending any on: 200 frames
    of 4 MiB took 800 MB in its worker, and an endless iterable never sent one."""
    p = Pipeline([200], start_method=method).explode(frames).task(first)
    assert p.wait_for_result() == [float(i) for i in range(200)]
    explode = next(row for row in p.stats().rows if row.name == "frames")
    assert explode.items_out == 200
    assert explode.peak_rss_mb < 400, explode.peak_rss_mb


@pytest.mark.timeout(30)
def test_an_endless_explode_ends_at_a_limit(method: str) -> None:
    got = Pipeline([None], start_method=method).explode(endless).limit(1000).wait_for_result()
    assert got == list(range(1000))


@pytest.mark.timeout(30)
def test_an_endless_explode_ends_at_a_limit_inline() -> None:
    got = Pipeline([None]).explode(endless).limit(1000).wait_for_result(engine="inline")
    assert got == list(range(1000))
