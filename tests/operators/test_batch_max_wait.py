"""``batch(n, max_wait=seconds)``: a batch leaves full, or once its oldest item has waited."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from olympipe import Pipeline

pytestmark = pytest.mark.timeout(60)


def _one_then_blocked(release: threading.Event) -> Iterator[int]:
    yield 0
    release.wait(30)  # a camera that stalls: the first item must not wait for a second
    yield 1


def test_a_lone_item_leaves_once_it_has_waited() -> None:
    """(Not inline: nothing runs there while the source is blocked in next(); nor Ray, whose
    driver closes an overdue batch when the next chunk comes: both documented.)"""
    release = threading.Event()
    try:
        it = iter(Pipeline(_one_then_blocked(release)).batch(10, max_wait=0.05))
        first = next(it)  # without max_wait this blocks until the source goes on
        assert not release.is_set()
        assert first == [0]
    finally:
        release.set()
    assert list(it) == [[1]]


def _paced(n: int, every: float) -> Iterator[int]:
    for i in range(n):
        time.sleep(every)  # a source that yields at its own pace (a device), not a sync point
        yield i


def test_the_wait_counts_from_the_oldest_item_not_the_latest(engine: Any) -> None:
    got = Pipeline(_paced(40, 0.01)).batch(1000, max_wait=0.05).wait_for_result(engine=engine)
    assert [x for batch in got for x in batch] == list(range(40))  # every item, in order
    # A clock restarted by each arrival (every 10 ms < 50 ms) would hold all 40 to the end.
    assert len(got) > 2


def test_full_batches_leave_at_once_and_the_rest_on_time() -> None:
    got = Pipeline(range(25)).batch(10, keep_incomplete_batch=False, max_wait=30.0).wait_for_result()
    assert got == [list(range(10)), list(range(10, 20))]  # the end, not the wait, drops the 5


@pytest.mark.parametrize(("bad", "error"), [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError)])
def test_bad_max_wait(bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_wait"):
        Pipeline(range(3)).batch(2, max_wait=bad)
