"""Chunk sizing and queue_size: how much the feeder puts in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from olympipe import Pipeline
from olympipe._runtime.feeder import MAX_ITEMS, Feeder


def feeder_with(cost: tuple[float | None, int], item_bytes: float = 8.0) -> Feeder:
    feeder = Feeder([], [], None, threading.Event(), lambda: cost)  # type: ignore[arg-type]
    feeder._item_bytes = item_bytes
    return feeder


def test_slow_items_travel_one_per_chunk() -> None:
    assert feeder_with((0.010, 1))._next_target(gap=0.0) == 1  # 10 ms an item: balance first


def test_trivial_items_travel_in_large_chunks() -> None:
    target = feeder_with((1e-6, 1))._next_target(gap=0.0)
    assert 500 <= target <= MAX_ITEMS  # about 1 ms of work per chunk


def test_large_items_are_bounded_by_bytes() -> None:
    assert feeder_with((1e-6, 1), item_bytes=4 * 2**20)._next_target(gap=0.0) == 1


def test_a_slow_source_is_not_waited_for() -> None:
    # The source gives an item every 20 ms: a chunk holds what arrives within the hold time.
    assert feeder_with((1e-6, 1))._next_target(gap=0.020) == 1


def test_concurrency_gets_enough_items_per_chunk() -> None:
    assert feeder_with((0.010, 8))._next_target(gap=0.0) == 8  # 8 threads in the worker


def slow(x: int) -> int:
    time.sleep(0.05)
    return x


@pytest.mark.parametrize(("queue_size", "low", "high"), [(1, 1, 4), (50, 20, 1000)])
def test_queue_size_bounds_what_the_source_gives_ahead(queue_size: int, low: int, high: int) -> None:
    pulled: list[int] = []
    reached = threading.Event()

    def source() -> Iterator[int]:
        for i in range(1000):
            pulled.append(i)
            if len(pulled) > low:
                reached.set()
            yield i

    p: Pipeline[Any] = Pipeline(source(), queue_size=queue_size, start_method="fork").task(slow)
    for _ in p:
        assert reached.wait(30)  # the feeder runs ahead at least this far...
        time.sleep(0.3)  # ...and this is how long it is watched for going further than it may
        ahead = len(pulled) - p.stats().rows[0].items_in  # pulled, not yet processed
        break
    assert low <= ahead <= high
