"""Memory stays bounded whatever one item does: a slow item holds the others back."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from olympipe import Pipeline

pytestmark = pytest.mark.timeout(60)

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
